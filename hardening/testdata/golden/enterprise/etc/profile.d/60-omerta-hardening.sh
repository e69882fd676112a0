# Written by omerta harden; local changes are overwritten. Add your own settings in a separate file.
umask 027
TMOUT=900
readonly TMOUT
export TMOUT
