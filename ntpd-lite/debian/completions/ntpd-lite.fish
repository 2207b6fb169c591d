# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_ntpd_lite_global_optspecs
    string join \n c/config= log-level= h/help V/version
end

function __fish_ntpd_lite_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_ntpd_lite_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_ntpd_lite_using_subcommand
    set -l cmd (__fish_ntpd_lite_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c ntpd-lite -n "__fish_ntpd_lite_needs_command" -s c -l config -d 'Configuration file to run with' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_needs_command" -l log-level -d 'Log level or filter (RUST_LOG syntax), e.g. `info`, `debug`, `ntpd_lite=trace`; default `[observability] log-level`, else `info`. RUST_LOG, if set, wins' -r
complete -c ntpd-lite -n "__fish_ntpd_lite_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ntpd-lite -n "__fish_ntpd_lite_needs_command" -s V -l version -d 'Print version'
complete -c ntpd-lite -n "__fish_ntpd_lite_needs_command" -f -a "check-config" -d 'Check a configuration file as start-up does, short of privileges; exit 0 valid, 2 invalid'
complete -c ntpd-lite -n "__fish_ntpd_lite_needs_command" -f -a "status" -d 'Show a running daemon\'s synchronization status (like `chronyc tracking` and `sources`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_needs_command" -f -a "sources" -d 'Show a running daemon\'s sources (like `chronyc sources`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_needs_command" -f -a "ctl" -d 'Ask a running daemon to show or do something (like chronyc): every verb over the control socket'
complete -c ntpd-lite -n "__fish_ntpd_lite_needs_command" -f -a "generate" -d 'Write man pages or shell completions (for packaging)'
complete -c ntpd-lite -n "__fish_ntpd_lite_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand check-config" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand status" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand status" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand status" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand status" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand sources" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand sources" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand sources" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand sources" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "status" -d 'Synchronization status and sources (like `chronyc tracking`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "sources" -d 'The sources (like `chronyc sources`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "sourcestats" -d 'Each source\'s statistics: samples, frequency and its error, offset and its spread (like `chronyc sourcestats`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "clients" -d 'The server\'s busiest clients (like `chronyc clients`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "makestep" -d 'Step the clock to the sources\' time now, whatever the step threshold (like `chronyc makestep`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "burst" -d 'Send four requests to every online source now (like `chronyc burst`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "add-source" -d 'Add a source, until the daemon stops or it is removed (a reload keeps it)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "remove-source" -d 'Remove the source at ADDRESS, as `sources` shows it'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "offline" -d 'Stop polling ADDRESS, or every source (its statistics stay)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "online" -d 'Poll ADDRESS, or every source, again, at once'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "reload" -d 'Reread the configuration as SIGHUP does: sources, access lists, rate limits, log level'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and not __fish_seen_subcommand_from status sources sourcestats clients makestep burst add-source remove-source offline online reload help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from status" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from status" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from status" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from sources" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from sources" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from sources" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from sources" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from sourcestats" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from sourcestats" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from sourcestats" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from sourcestats" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from clients" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from clients" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from clients" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from clients" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from makestep" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from makestep" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from makestep" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from makestep" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from burst" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from burst" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from burst" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from burst" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from add-source" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from add-source" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from add-source" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from add-source" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from remove-source" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from remove-source" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from remove-source" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from remove-source" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from offline" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from offline" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from offline" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from offline" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from online" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from online" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from online" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from online" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from reload" -l socket -d 'The daemon\'s control socket [default: the one in --config, else /run/ntpd-lite/control.sock]' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from reload" -s c -l config -d 'Take the control socket from this configuration file' -r -F
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from reload" -l json -d 'Print JSON instead of a table'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from reload" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "status" -d 'Synchronization status and sources (like `chronyc tracking`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "sources" -d 'The sources (like `chronyc sources`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "sourcestats" -d 'Each source\'s statistics: samples, frequency and its error, offset and its spread (like `chronyc sourcestats`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "clients" -d 'The server\'s busiest clients (like `chronyc clients`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "makestep" -d 'Step the clock to the sources\' time now, whatever the step threshold (like `chronyc makestep`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "burst" -d 'Send four requests to every online source now (like `chronyc burst`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "add-source" -d 'Add a source, until the daemon stops or it is removed (a reload keeps it)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "remove-source" -d 'Remove the source at ADDRESS, as `sources` shows it'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "offline" -d 'Stop polling ADDRESS, or every source (its statistics stay)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "online" -d 'Poll ADDRESS, or every source, again, at once'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "reload" -d 'Reread the configuration as SIGHUP does: sources, access lists, rate limits, log level'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand ctl; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "man" -d 'Man pages: ntpd-lite.8 and one per subcommand'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "completions" -d 'A completion script for one shell'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and __fish_seen_subcommand_from man" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and __fish_seen_subcommand_from completions" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "man" -d 'Man pages: ntpd-lite.8 and one per subcommand'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "completions" -d 'A completion script for one shell'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources ctl generate help" -f -a "check-config" -d 'Check a configuration file as start-up does, short of privileges; exit 0 valid, 2 invalid'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources ctl generate help" -f -a "status" -d 'Show a running daemon\'s synchronization status (like `chronyc tracking` and `sources`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources ctl generate help" -f -a "sources" -d 'Show a running daemon\'s sources (like `chronyc sources`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources ctl generate help" -f -a "ctl" -d 'Ask a running daemon to show or do something (like chronyc): every verb over the control socket'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources ctl generate help" -f -a "generate" -d 'Write man pages or shell completions (for packaging)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources ctl generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "status" -d 'Synchronization status and sources (like `chronyc tracking`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "sources" -d 'The sources (like `chronyc sources`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "sourcestats" -d 'Each source\'s statistics: samples, frequency and its error, offset and its spread (like `chronyc sourcestats`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "clients" -d 'The server\'s busiest clients (like `chronyc clients`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "makestep" -d 'Step the clock to the sources\' time now, whatever the step threshold (like `chronyc makestep`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "burst" -d 'Send four requests to every online source now (like `chronyc burst`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "add-source" -d 'Add a source, until the daemon stops or it is removed (a reload keeps it)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "remove-source" -d 'Remove the source at ADDRESS, as `sources` shows it'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "offline" -d 'Stop polling ADDRESS, or every source (its statistics stay)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "online" -d 'Poll ADDRESS, or every source, again, at once'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from ctl" -f -a "reload" -d 'Reread the configuration as SIGHUP does: sources, access lists, rate limits, log level'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "man" -d 'Man pages: ntpd-lite.8 and one per subcommand'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "completions" -d 'A completion script for one shell'
