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
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "man" -d 'Man pages: ntpd-lite.8 and one per subcommand'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "completions" -d 'A completion script for one shell'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and not __fish_seen_subcommand_from man completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and __fish_seen_subcommand_from man" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and __fish_seen_subcommand_from completions" -s h -l help -d 'Print help'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "man" -d 'Man pages: ntpd-lite.8 and one per subcommand'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "completions" -d 'A completion script for one shell'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources generate help" -f -a "check-config" -d 'Check a configuration file as start-up does, short of privileges; exit 0 valid, 2 invalid'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources generate help" -f -a "status" -d 'Show a running daemon\'s synchronization status (like `chronyc tracking` and `sources`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources generate help" -f -a "sources" -d 'Show a running daemon\'s sources (like `chronyc sources`)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources generate help" -f -a "generate" -d 'Write man pages or shell completions (for packaging)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and not __fish_seen_subcommand_from check-config status sources generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "man" -d 'Man pages: ntpd-lite.8 and one per subcommand'
complete -c ntpd-lite -n "__fish_ntpd_lite_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "completions" -d 'A completion script for one shell'
