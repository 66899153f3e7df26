//! How to get a missing server binary on this system: the package manager
//! found on PATH and the package it names the server by. Words only; nothing
//! here installs anything.

/// A binary contend may need and not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerBinary {
    /// `redis-server`.
    Redis,
    /// `initdb` and `postgres`.
    Postgres,
    /// `pgbouncer` (`--pooler pgbouncer`).
    PgBouncer,
}

/// Package managers contend knows, in the order they are looked for, with
/// the command that installs a package and each binary's package name.
const MANAGERS: &[(&str, &str, &str, &str)] = &[
    // (binary, install command, redis package, postgres package)
    ("apt-get", "apt-get install -y", "redis-server", "postgresql"),
    ("dnf", "dnf install -y", "redis", "postgresql-server"),
    ("yum", "yum install -y", "redis", "postgresql-server"),
    ("zypper", "zypper install -y", "redis", "postgresql-server"),
    ("apk", "apk add", "redis", "postgresql"),
    ("pacman", "pacman -S --noconfirm", "redis", "postgresql"),
    ("brew", "brew install", "redis", "postgresql@15"),
];

/// The command that installs `binary` here, e.g. `apt-get install -y
/// redis-server` (`sudo` first when not root, except for Homebrew), or
/// `None` when no known package manager is on PATH.
pub fn install_command(binary: ServerBinary) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    let dirs: Vec<_> = std::env::split_paths(&path).collect();
    let on_path = |name: &str| dirs.iter().any(|dir| dir.join(name).is_file());
    let (manager, install, redis, postgres) = MANAGERS.iter().find(|(manager, ..)| on_path(manager))?;
    let package = match binary {
        ServerBinary::Redis => redis,
        ServerBinary::Postgres => postgres,
        // Every manager above names it so.
        ServerBinary::PgBouncer => &"pgbouncer",
    };
    let sudo = match *manager != "brew" && !nix::unistd::geteuid().is_root() {
        true => "sudo ",
        false => "",
    };
    Some(format!("{sudo}{install} {package}"))
}

/// One clause saying how to get `binary`: the command for this system (and
/// that `scripts/setup.sh` runs it, for Redis, which it installs), or the
/// package to look for.
pub fn how_to_get(binary: ServerBinary) -> String {
    let command = install_command(binary);
    match (binary, command) {
        (ServerBinary::Redis, Some(command)) => {
            format!("install it with `{command}` (scripts/setup.sh in contend's source tree does this)")
        }
        (ServerBinary::Redis, None) => {
            "install Redis with this system's package manager (scripts/setup.sh in contend's source tree does it on Debian and Ubuntu)".into()
        }
        (ServerBinary::Postgres, Some(command)) => format!("install them with `{command}`"),
        (ServerBinary::Postgres, None) => "install PostgreSQL's server package with this system's package manager".into(),
        (ServerBinary::PgBouncer, Some(command)) => {
            format!("install it with `{command}` (scripts/setup.sh in contend's source tree does this)")
        }
        (ServerBinary::PgBouncer, None) => "install PgBouncer with this system's package manager".into(),
    }
}
