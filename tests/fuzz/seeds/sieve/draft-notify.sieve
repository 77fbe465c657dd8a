require ["notify", "fileinto"];
if header :is "subject" "d-1" { notify :method "mailto" :options "d1@example.net"; keep; }
elsif header :is "subject" "d-2" { notify :method "mailto" :options ["d2@example.net"] :message "Got $from$ about $subject$ env $env-from$ text $text[5]$" :high :id "x"; fileinto "INBOX.f1"; }
elsif header :is "subject" "d-3" { notify :options ["d3@example.net"] :low; keep; }
