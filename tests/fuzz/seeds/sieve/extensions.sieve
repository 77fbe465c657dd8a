require ["fileinto", "reject", "imap4flags", "copy", "envelope", "subaddress",
         "relational", "comparator-i;ascii-numeric", "regex", "vacation", "body", "mailbox", "variables", "date", "include",
         "encoded-character", "ihave", "environment", "index", "duplicate", "editheader",
         "special-use", "mailboxid", "mboxmetadata", "servermetadata", "enotify", "fcc"];
if header :matches "subject" "d-*" { include "dnote"; stop; }
if header :is "subject" "note1" { notify "mailto:n1@example.net"; keep; stop; }
if header :is "subject" "note4" { notify "mailto:n4@example.net"; fileinto "INBOX.f1"; redirect "r4@example.net"; addflag "x"; fileinto :copy "INBOX.f2"; stop; }
if header :is "subject" "note5" { discard; notify :message "five" "mailto:n5@example.net"; notify :message "five" "mailto:n5@example.net"; notify :message "again" "mailto:n5@example.net"; stop; }
if header :is "subject" "note6" { vacation :addresses "u7@example.org" "v6"; notify "mailto:n6@example.net,n7@example.net"; stop; }
if header :contains "subject" "note7" { notify "mailto:n8@example.net"; keep; stop; }
if header :is "subject" "note2" { notify :from "me@example.org" :importance "1" :message "Mail from ${1}" :options ["x"] "mailto:n2@example.net?subject=Hey%20there&body=See%20it&cc=c@example.net"; keep; stop; }
if header :is "subject" "note3" { if valid_notify_method "mailto:a@b" { addflag "valid"; } if valid_notify_method "xmpp:a@b" { addflag "xmpp"; } if notify_method_capability "mailto:a@b" "online" "maybe" { addflag "maybe"; } set :encodeurl "e" "a b&c"; addflag "${e}"; keep; stop; }
if header :is "subject" "su" {
  if specialuse_exists "\\Junk" { addflag "hasjunk"; }
  if specialuse_exists "INBOX.Spam" "\\Junk" { addflag "spamjunk"; }
  if specialuse_exists "INBOX.f1" "\\Junk" { addflag "f1junk"; }
  if specialuse_exists ["\\Junk", "\\Archive"] { addflag "both"; }
  fileinto :specialuse "\\Junk" "INBOX.f2"; stop;
}
if header :is "subject" "su2" { fileinto :specialuse "\\Archive" "INBOX.f2"; stop; }
if header :is "subject" "su3" { fileinto :specialuse "\\Archive" :create "INBOX.Archive"; stop; }
if header :is "subject" "su4" { if specialuse_exists "\\Archive" { addflag "archivemade"; } keep; stop; }
if header :is "subject" "awayfcc" { vacation :fcc "INBOX.f2" :flags "\\Seen kept" :addresses "u7@example.org" "fcc reason"; stop; }
if header :is "subject" "mid" {
  if mailboxidexists "nosuchid" { addflag "idthere"; }
  fileinto :mailboxid "nosuchid" "INBOX.f1"; stop;
}
if header :is "subject" "meta" {
  if metadata "INBOX.f1" "/private/comment" "hello" { addflag "privcomment"; }
  if metadata :contains "INBOX.f1" "/shared/comment" "har" { addflag "sharedcomment"; }
  if metadataexists "INBOX.f1" ["/private/comment", "/shared/comment"] { addflag "bothexist"; }
  if metadataexists "INBOX.f2" "/private/comment" { addflag "f2comment"; }
  if servermetadata "/shared/comment" "srv" { addflag "srvcomment"; }
  if servermetadataexists "/shared/nosuch" { addflag "srvnosuch"; }
  keep; stop;
}
if header :is "subject" "env" {
  if environment :is "domain" "" { addflag "domain"; }
  if environment :is "host" "backend1" { addflag "host"; }
  if environment :is "location" "MDA" { addflag "location"; }
  if environment :is "name" "Cyrus LMTP" { addflag "name"; }
  if environment :is "phase" "during" { addflag "phase"; }
  if environment :matches "remote-host" "*" { addflag "rhost"; }
  if environment :is "remote-host" "" { addflag "rhostempty"; }
  if environment :matches "remote-ip" "*" { addflag "rip"; }
  if environment :matches "version" "3.6.1*" { addflag "v36"; }
  if environment :is "nosuch" "" { addflag "nosuchenv"; }
  keep; stop;
}
if header :is "subject" "edit" {
  addheader "X-First" "one";
  addheader :last "X-Last" "two";
  deleteheader "x-drop";
  deleteheader :index 1 "x-multi";
  deleteheader :index 1 :last "x-multi";
  deleteheader :contains "x-some" "bad";
  addheader "Received" "from sieve";
  addheader "auto-submitted" "no";
  if header :is "x-first" "one" { addflag "seenadded"; }
  if not exists "x-drop" { addflag "dropped"; }
  if header :index 2 "x-multi" "m3" { addflag "m3second"; }
  fileinto "INBOX.f1"; stop;
}
if header :is "subject" "idx" {
  if header :index 2 "x-multi" "m2" { addflag "idx2"; }
  if header :index 1 :last "x-multi" "m4" { addflag "idxlast"; }
  if header :index 9 "x-multi" "m4" { addflag "idx9"; }
  if address :index 2 :localpart "cc" "b" { addflag "addr2"; }
  if date :index 2 "x-date" "year" "2021" { addflag "date2"; }
  keep; stop;
}
if header :is "subject" "dup" {
  if duplicate { fileinto "INBOX.f2"; }
  if duplicate :header "x-key" :handle "h1" { addflag "dupkey"; }
  if duplicate :uniqueid "fixed" :seconds 60 { addflag "dupfixed"; }
  keep; stop;
}
if header :is "subject" "enc" {
  if header :is "x-enc" "${hex:41 42}${unicode:e9}" { addflag "encoded"; }
  if header :is "x-enc" "${hex:zz}" { addflag "notencoded"; }
  keep; stop;
}
if header :is "subject" "have" {
  if ihave "editheader" { addheader "X-Have" "yes"; }
  if ihave "nosuch-ext" { nosuchcommand :tag "x"; }
  if not ihave "nosuch" { addflag "nothave"; }
  keep; stop;
}
if header :is "subject" "err" { addflag "beforeerror"; error "custom failure"; }
if header :is "subject" "incl" { include "lib"; include :optional "nolib"; addflag "after"; keep; stop; }
if header :matches "subject" "var * and *" {
  set :upper "first" "${1}"; set :length "n" "${2}";
  if string :is "${2}" "more words" { addflag "second"; }
  fileinto :flags "v${first} n${n}" "INBOX.f1"; stop;
}
if header :is "subject" "dated" {
  if date :originalzone "date" "date" "2020-01-01" { addflag "day2020"; }
  if date :zone "+0000" "date" "hour" "23" { addflag "utc23"; }
  if date :originalzone "date" "weekday" "3" { addflag "wednesday"; }
  if currentdate :value "ge" "year" "2024" { addflag "recent"; }
  if date "x-nosuch" "year" "2020" { addflag "nosuchdate"; }
  keep; stop;
}
if header :is "subject" "mkbox" { fileinto :create "INBOX.made.deep"; stop; }
if header :is "subject" "mkbox missing" { fileinto "INBOX.made2"; stop; }
if header :is "subject" "mbx" {
  if mailboxexists "INBOX.f1" { addflag "f1there"; }
  if mailboxexists "INBOX.closed" { addflag "closedtoo"; }
  keep; stop;
}
if body :text :contains "secret-word" { fileinto "INBOX.f1"; stop; }
if body :raw :contains "rawtoken" { addflag "raw"; keep; stop; }
if body :content "text/html" :contains "htmlword" { addflag "html"; keep; stop; }
# Each subject picks one branch.
if header :is "subject" "away" { vacation :days 3 :subject "Out of office" :addresses ["u7@example.org"] "I am away."; stop; }
if header :is "subject" "away2" { vacation :from "boss@example.org" :handle "h" "Plain reason."; stop; }
if header :is "subject" "away4" { vacation :from "boss@example.org" :addresses ["x@y", "U7@example.org"] :subject "=?utf-8?q?Abwesend?=" "4"; stop; }
if header :is "subject" "away3" { vacation :addresses "u7@example.org" text:
Line one,
line two.
.
; stop; }
if header :contains "subject" "tofolder" { fileinto "INBOX.f1"; }
elsif header :contains "subject" "tonofolder" { fileinto "INBOX.nosuch"; }
elsif header :is "subject" "toclosed" { addflag "kept"; fileinto "INBOX.closed"; }
elsif header :contains "subject" "rejectme" { reject text:
Not wanted
here.
.
;
}
elsif header :contains "subject" "flagme" { addflag "\\Flagged"; addflag "$Label1 \\Seen"; keep; }
elsif header :contains "subject" "discardme" { discard; }
elsif header :contains "subject" "copyme" { fileinto :copy :flags "\\Answered" "INBOX.f1"; }
elsif header :contains "subject" "twice" { fileinto "INBOX.f1"; fileinto "INBOX.f1"; keep; keep; }
elsif header :is "subject" "redirectcopy" { redirect :copy "copy@example.net"; }
elsif header :is "subject" "redirectme" { redirect "elsewhere@example.net"; }
elsif address :domain :is "from" "example.com" { fileinto "INBOX.f2"; }
elsif header :value "ge" :comparator "i;ascii-numeric" "x-score" "10" {
  setflag "\\Flagged high"; removeflag "\\Flagged"; keep;
}
elsif header :regex "subject" "^re: +[0-9]+$" { fileinto "INBOX.f2"; stop; }
elsif header :is "subject" "café" { fileinto :flags "accent" "INBOX.f1"; }
elsif envelope :detail "to" "det" { fileinto "INBOX.f2"; }
elsif envelope :all :is "from" "" { addflag "bounce"; }
elsif exists "x-exists" { addflag "exists"; }
elsif size :over 2K { addflag "big"; }
elsif anyof (header :contains "list-id" "example.org", not exists "list-id") {
  if header :matches "precedence" "b*k" { fileinto "INBOX.f2"; }
}
