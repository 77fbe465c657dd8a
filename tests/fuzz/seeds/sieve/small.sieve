require ["fileinto","imap4flags"];
if anyof (header :matches "subject" "*x?", not exists "y") { addflag "a b"; fileinto :flags "\\Seen" "INBOX.a"; } else { discard; }
