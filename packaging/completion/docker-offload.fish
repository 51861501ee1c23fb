# `docker offload <TAB>` in fish, installed by the docker-offload package in vendor_conf.d.
#
# fish loads the completions of `docker` from one file, docker's own; Debian's docker.io
# docker.fish knows nothing of CLI plugins. So this file adds to them: `offload` as a docker
# command, and everything after `docker offload` from the plugin itself, through the docker
# CLI's completion protocol (`docker-offload __complete offload WORDS... CURRENT`). The script
# `docker completion fish` prints (tested with the docker CLI 28) erases every completion of `docker`
# when it loads, these included, and asks the plugin the same way itself.

# The plugin, where the docker CLI looks for it, in the docker CLI's order.
function __docker_offload_plugin
    set -l config $DOCKER_CONFIG
    test -n "$config"; or set config ~/.docker
    for dir in $config/cli-plugins /usr/local/lib/docker/cli-plugins \
            /usr/local/libexec/docker/cli-plugins /usr/lib/docker/cli-plugins \
            /usr/libexec/docker/cli-plugins
        if test -x $dir/docker-offload
            echo $dir/docker-offload
            return 0
        end
    end
    return 1
end

# The tokens of the command line after `docker` and its global flags, before the current token.
function __docker_offload_after_globals
    set -l tokens (commandline -opc)
    set -e tokens[1]
    while set -q tokens[1]
        switch $tokens[1]
            case --config --context -c --host -H --log-level -l --tlscacert --tlscert --tlskey
                set -e tokens[1..2]
            case '-*'
                set -e tokens[1]
            case '*'
                break
        end
    end
    for token in $tokens
        echo $token
    end
end

# The words after `docker [global flags] offload` on the command line, before the current
# token; fails when the command line is not a `docker offload` one.
function __docker_offload_words
    set -l tokens (__docker_offload_after_globals)
    test "$tokens[1]" = offload; or return 1
    set -e tokens[1]
    for token in $tokens
        echo $token
    end
    return 0
end

# True while no docker command has been typed yet (only global flags).
function __docker_offload_no_command
    set -l tokens (__docker_offload_after_globals)
    not set -q tokens[1]
end

# Debian's docker.fish offers docker's own commands and global flags wherever its
# __fish_docker_no_subcommand finds none of the commands it knows, so also after `offload`.
# Once it is loaded (fish loads it before it evaluates any condition for `docker`), it is
# wrapped to say "a command was given" on a `docker offload` line.
function __docker_offload_quiet_docker_fish
    functions -q __fish_docker_no_subcommand; or return
    functions -q __docker_offload_fish_docker_no_subcommand; and return
    functions -c __fish_docker_no_subcommand __docker_offload_fish_docker_no_subcommand
    function __fish_docker_no_subcommand
        __docker_offload_words >/dev/null; and return 1
        __docker_offload_fish_docker_no_subcommand $argv
    end
end

function __docker_offload_complete
    set -l words (__docker_offload_words); or return
    set -l plugin (__docker_offload_plugin); or return
    set -l current (commandline -ct)
    # A value typed as --flag=VALUE: the plugin answers with values, fish matches whole tokens.
    set -l prefix (string match -r -- '^-[^=]*=' $current)
    # "$current": exactly one word, also when it is empty (the plugin completes the last word).
    for line in ($plugin __complete offload $words "$current" 2>/dev/null)
        string match -q -r -- '^:[0-9]+$' $line; and continue
        printf '%s%s\n' "$prefix" $line
    end
end

complete -c docker -f -n '__docker_offload_quiet_docker_fish; __docker_offload_no_command' -a offload \
    -d 'Run containers and builds on an ephemeral remote engine'
complete -c docker -f -n '__docker_offload_quiet_docker_fish; __docker_offload_words >/dev/null' \
    -a '(__docker_offload_complete)'
