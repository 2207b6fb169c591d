complete -c ntpdate-lite -s p -l samples -d 'Samples per address; the lowest-delay valid one is used' -r
complete -c ntpdate-lite -l gap -d 'Seconds between the samples of one address' -r
complete -c ntpdate-lite -l port -d 'Server port, unless a server argument names its own' -r
complete -c ntpdate-lite -s t -l timeout -d 'Seconds to wait for each reply (fractional)' -r
complete -c ntpdate-lite -s o -l ntp-version -d 'NTP version of the requests (2 is ntplib\'s default); replies of versions 1-4 are accepted' -r
complete -c ntpdate-lite -s k -l key-file -d 'Keys file (the ntpd/ntpsec/chrony format, owner-only) for `-a` (as ntpdate\'s and ntpdig\'s `-k`)' -r -F
complete -c ntpdate-lite -s a -l key -d 'Sign each request with this key of `-k FILE` and use only replies signed with it (RFC 8573; as ntpdate\'s and ntpdig\'s `-a`)' -r
complete -c ntpdate-lite -l min-agree -d 'Fewest servers that must agree (truechimers); fewer is a failure (exit 5)' -r
complete -c ntpdate-lite -l format -d 'Output format; the default is the ntpdate lines followed by the ctime line' -r -f -a "ctime\t'The server\'s time, like Python\'s `time.ctime(r.tx_time)`'
ntpdate\t'`server ADDR, stratum N, offset +0.000123, delay 0.000456` per address, then ntpdate\'s summary line'
sntp\t'One line like sntp / ntpdig'
iso\t'The server\'s time in RFC 3339'
unix\t'The server\'s time in Unix seconds'"
complete -c ntpdate-lite -l nts-ca -d 'With --nts: a PEM file of the CA certificates to trust instead of the system\'s' -r -F
complete -c ntpdate-lite -s 4 -d 'Use IPv4 addresses only'
complete -c ntpdate-lite -s 6 -d 'Use IPv6 addresses only'
complete -c ntpdate-lite -s j -l json -d 'Print one JSON object (on success and on failure)'
complete -c ntpdate-lite -s b -l step -d 'Step the clock by the offset (needs CAP_SYS_TIME)'
complete -c ntpdate-lite -s B -l slew -d 'Slew the clock by the offset with adjtime (needs CAP_SYS_TIME)'
complete -c ntpdate-lite -l set -d 'Step if the offset is 0.5 s or more, else slew (needs CAP_SYS_TIME)'
complete -c ntpdate-lite -s q -l query -d 'Query only, never touch the clock (the default; an error with -b, -B or --set)'
complete -c ntpdate-lite -s v -l verbose -d 'Print every sample of every address'
complete -c ntpdate-lite -s u -d 'Accepted for ntpdate compatibility; does nothing (the source port is always random)'
complete -c ntpdate-lite -l utc -d 'Show times in UTC instead of local time'
complete -c ntpdate-lite -l nts -d 'Network Time Security (RFC 8915): each SERVER is an NTS-KE server (port 4460 unless it names one), which names the NTP server and port and gives the keys; only authenticated replies count'
complete -c ntpdate-lite -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ntpdate-lite -s V -l version -d 'Print version'
