"""The names a param may not have, because the processes a step starts read them from their
environment.

A shell step gets its params as environment variables under their own names, so a param
named `PATH`, `LD_PRELOAD` or `BASH_ENV` would decide which program `ls` is, what the
dynamic loader injects or what the shell runs before the command. Anyone who can start a
workflow can give params (undeclared ones too), so these names are refused wherever a
param is named: at push (a workflow's, a step's and a loop's params), in the params of a
start, a restart, a signal trigger's start and a subworkflow's start (`check_overrides`),
and again by the worker before it runs a task (defence in depth: a definition stored before
this rule, or a task written by hand, is a USER failure and never runs).

Case matters, as it does in the environment: `PATH` is reserved, `path` is not. The list is
precise rather than "every upper-case name", since upper-case params are common; a worker
also refuses a param that would replace a variable of its own step environment
(`BATON_STEP_ENV_ALLOW`), which only it knows.
"""

from __future__ import annotations

# Variables read by the shell, the C library, the dynamic loader and the usual interpreters
# and tools when a command starts, or that say where a step's files and trust come from.
RESERVED_ENV_NAMES = frozenset(
    {
        # search paths and the identity of the process
        "PATH",
        "HOME",
        "SHELL",
        "USER",
        "LOGNAME",
        "TMPDIR",
        "CDPATH",
        # POSIX sh and bash start-up and parsing
        "ENV",
        "IFS",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "SHELLOPTS",
        "BASHOPTS",
        "GLOBIGNORE",
        "POSIXLY_CORRECT",
        "PROMPT_COMMAND",
        "HISTFILE",
        # the C library: locale, zone, name resolution, character set conversion
        "LANG",
        "LANGUAGE",
        "TZ",
        "TZDIR",
        "NLSPATH",
        "GCONV_PATH",
        "HOSTALIASES",
        "LOCALDOMAIN",
        "RES_OPTIONS",
        "RESOLV_HOST_CONF",
        "TERM",
        "TERMINFO",
        # programs other programs start
        "EDITOR",
        "VISUAL",
        "PAGER",
        "MANPAGER",
        "LESSOPEN",
        "LESSCLOSE",
        # interpreters' module paths and options
        "CLASSPATH",
        "RUBYOPT",
        "RUBYLIB",
        "GEM_HOME",
        "GEM_PATH",
        "PERLLIB",
        "PERLIO",
        # where TLS trust and proxies come from (curl and most libraries read both cases)
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "CURL_CA_BUNDLE",
        "REQUESTS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "FTP_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "ftp_proxy",
    }
)


RESERVED_ENV_PREFIXES = (
    "LD_",  # the dynamic loader: LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT …
    "DYLD_",  # its macOS counterpart
    "GLIBC_",  # GLIBC_TUNABLES
    "MALLOC_",
    "LC_",  # locale categories
    "BASH_",  # BASH_ENV, BASH_FUNC_*, BASH_XTRACEFD …
    "PYTHON",  # PYTHONPATH, PYTHONSTARTUP, PYTHONHOME …
    "PERL5",  # PERL5LIB, PERL5OPT
    "NODE_",  # NODE_OPTIONS, NODE_PATH
    "JAVA_",  # JAVA_TOOL_OPTIONS, JAVA_HOME
    "_JAVA_",
    "JDK_",
    "GIT_",  # GIT_SSH_COMMAND, GIT_EXEC_PATH, GIT_CONFIG_* …
    "SSH_",  # SSH_AUTH_SOCK, SSH_ASKPASS
    "PIP_",  # pip's configuration: PIP_INDEX_URL …
    "npm_config_",
    "NPM_CONFIG_",
    "BATON_",  # the step's identity (BATON_INSTANCE_ID …) and the worker's own settings
)


def reserved_env_name(name: str) -> bool:
    """True when a param may not be named `name`: a step's processes read it."""
    return name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES)


def reserved_env_fault(name: str) -> str | None:
    """Why a param may not be named `name`, or None when it may."""
    if not reserved_env_name(name):
        return None
    return (
        f"{name!r} is reserved: a step's processes read it from their environment, so a param"
        " may not set it (see 'Params as environment variables' in docs/dsl.md)"
    )
