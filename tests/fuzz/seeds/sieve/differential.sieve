require ["fileinto", "reject", "imap4flags", "copy", "envelope", "subaddress",
         "relational", "comparator-i;ascii-numeric", "regex", "vacation"];
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
