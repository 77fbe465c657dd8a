#!/usr/bin/env python3
"""Regenerate the parameter reference pages from the registries:
man/man5/mumail-main.cf.5 (Postfix parameters) and
man/man5/mumail-imapd.conf.5 (Cyrus options).  tests/docs.rs checks that
the pages and the registries agree, so a registry change without a page
update fails CI.   python3 tests/tools/gen-man-params.py"""
import datetime, os
TODAY = datetime.date.today().isoformat()
top = os.path.join(os.path.dirname(__file__), "..", "..")
def esc(s):
    return s.replace("\\", "\\e").replace("-", "\\-") if s else '""'
STATUS = {"supported": "Supported.", "ignored": "Not implemented: set to another value than its default, a daemon that reads it logs one warning and ignores it.", "rejected": "Rejected: a non-default value is a fatal configuration error."}
out = ['.TH MUMAIL-MAIN.CF 5 "%s" mumail "File formats"' % TODAY, ".SH NAME", "mumail-main.cf \\- Postfix main.cf parameters known to mumail",
       ".SH DESCRIPTION", "mumail reads /etc/postfix/main.cf with Postfix's rules (see postconf(5)). Each parameter below is",
       "listed with its default as \\fBpostconf -d\\fR prints it (Postfix 3.7 defaults; build paths are RHEL's) and with what mumail does when it is set.",
       ".SH PARAMETERS"]
for line in open(os.path.join(top, "src/config/postfix/params.tsv")):
    if line.startswith("#") or line.startswith("@"):
        continue
    f = line.rstrip("\n").split("\t")
    out += [".TP", "\\fB%s\\fR (default: %s)" % (esc(f[0]), esc(f[4])), STATUS[f[3]]]
out += [".SH SEE ALSO", "postconf(1), master(5), postconf(5)"]
open(os.path.join(top, "man/man5/mumail-main.cf.5"), "w").write("\n".join(out) + "\n")
out = ['.TH MUMAIL-IMAPD.CONF 5 "%s" mumail "File formats"' % TODAY, ".SH NAME", "mumail-imapd.conf \\- Cyrus imapd.conf options known to mumail",
       ".SH DESCRIPTION", "mumail reads /etc/imapd.conf with Cyrus's rules (see imapd.conf(5)); defaults as Cyrus 3.6's cyr_info conf-default prints them.",
       ".SH OPTIONS"]
for line in open(os.path.join(top, "src/config/cyrus/options.tsv")):
    if line.startswith("#"):
        continue
    f = line.rstrip("\n").split("\t")
    text = "Type %s." % f[1]
    if f[3]:
        text += " Deprecated in favor of \\fB%s\\fR." % esc(f[3])
    if f[4]:
        text += " Allowed values: %s." % esc(f[4])
    if len(f) > 6 and f[6] != "supported":
        text += " Accepted; a daemon that reads it logs one warning: not implemented, ignored."
    out += [".TP", "\\fB%s\\fR (default: %s)" % (esc(f[0]), esc(f[2])), text]
out += [".SH SEE ALSO", "cyr_info(8), cyrus.conf(5)"]
open(os.path.join(top, "man/man5/mumail-imapd.conf.5"), "w").write("\n".join(out) + "\n")
