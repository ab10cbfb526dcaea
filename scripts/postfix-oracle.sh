#!/usr/bin/env bash
# The real Postfix smtpd as a reference for the lab's SMTP engine: reads an SMTP session on
# stdin, prints Postfix's replies, then the lines it logged. Root only; nothing is installed
# or started on the host: Debian's postfix package is downloaded (apt-get download) and
# unpacked into WORKDIR, and smtpd runs in stand-alone mode (`smtpd -S`, as `sendmail -bs`
# runs it) in a private mount namespace whose /dev holds a syslog socket of its own.
#
#   printf 'EHLO a\r\nMAIL FROM:<a b>\r\nQUIT\r\n' | scripts/postfix-oracle.sh [WORKDIR]
#
# tests/test_smtpd_postfix.py holds replies recorded this way (Debian 12: Postfix 3.7.11).
set -euo pipefail
WORK=${1:-/tmp/postfix-oracle}
mkdir -p "$WORK"
cd "$WORK"
if [ ! -x root/usr/lib/postfix/sbin/smtpd ]; then
    apt-get download postfix >/dev/null
    dpkg-deb -x postfix_*.deb root
fi
mkdir -p etc spool/maildrop spool/public spool/pid data dev
for d in null zero urandom random tty; do [ -e "dev/$d" ] || cp -a "/dev/$d" dev/; done
cat > etc/main.cf <<EOF
queue_directory = $WORK/spool
daemon_directory = $WORK/root/usr/lib/postfix/sbin
command_directory = $WORK/root/usr/sbin
data_directory = $WORK/data
shlib_directory = $WORK/root/usr/lib/postfix
meta_directory = $WORK/root/etc/postfix
myhostname = mail.example.net
mydomain = example.net
mydestination = example.net
mail_owner = daemon
setgid_group = mail
compatibility_level = 3.6
alias_maps =
alias_database =
local_recipient_maps =
mynetworks = 127.0.0.0/8
import_environment = MAIL_CONFIG TZ LANG LD_LIBRARY_PATH=$WORK/root/usr/lib/postfix
export_environment = TZ MAIL_CONFIG LANG LD_LIBRARY_PATH
EOF
rm -f dev/log syslog.txt
export WORK
unshare -m bash -c '
mount --bind "$WORK/dev" /dev
python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(\"/dev/log\")
s.settimeout(5)  # idle: smtpd has finished
with open(sys.argv[1], \"ab\") as out:
    while True:
        try:
            out.write(s.recv(9000) + b\"\n\")
        except socket.timeout:
            break
" "$WORK/syslog.txt" &
while [ ! -S /dev/log ]; do sleep 0.05; done
MAIL_CONFIG="$WORK/etc" LD_LIBRARY_PATH="$WORK/root/usr/lib/postfix" \
    "$WORK/root/usr/lib/postfix/sbin/smtpd" -S
wait
'
echo "--- logged"
sed -E 's/^<[0-9]+>//' syslog.txt
