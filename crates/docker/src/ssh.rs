//! Engines over SSH (`ssh://[user@]host[:port]`): the system's OpenSSH client forwards a local
//! unix socket to the remote engine's socket (`ssh -L LOCAL:/var/run/docker.sock`), and every
//! client of the run — benchform's API calls, the Docker CLI's builds, pushes and copies, compose —
//! talks to that one socket: one connection, one authentication, one host-key check per run
//! (docs/decisions.md says why not `docker system dial-stdio`).
//!
//! OpenSSH does what users configured: `~/.ssh/config`, keys from the agent or `~/.ssh`, host keys
//! from `known_hosts` — checking stays on, an unknown host is refused (`BatchMode` also rules out
//! any prompt for a password or passphrase). `BENCHFORM_SSH_CONFIG` names another config file
//! (`ssh -F`). What ssh says when it fails is turned into an error naming the fix.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The engine's socket on the remote host, where Docker puts it (and where the Docker CLI's
/// `dial-stdio` connects).
pub const REMOTE_SOCKET: &str = "/var/run/docker.sock";

/// The environment variable naming an ssh config file to use instead of `~/.ssh/config`.
pub const CONFIG_ENV: &str = "BENCHFORM_SSH_CONFIG";

/// How long the connection and the forward may take to come up.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

fn setpriv() -> Option<PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// Where an `ssh://` address points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ssh://")?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Why the engine could not be reached over SSH. Each says what to do ([`SshError::fix`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SshError {
    #[error("`{url}` is no SSH engine address: {why}")]
    BadAddress { url: String, why: String },
    #[error("cannot run `ssh` ({detail})")]
    NoClient { detail: String },
    #[error("no SSH server answers at {target} ({detail})")]
    Unreachable { target: String, detail: String },
    #[error("the host key of {target} is not known (not in known_hosts), and benchform never accepts an unknown key")]
    HostKeyUnknown { target: String },
    #[error(
        "the host key of {target} does not match the one in known_hosts ({known_hosts}): someone may be in between, \
         or the host was reinstalled"
    )]
    HostKeyChanged { target: String, known_hosts: String },
    #[error("{target} refused every key offered for user `{user}` (benchform never asks for a password)")]
    AuthRefused { target: String, user: String },
    #[error("SSH to {target} works, but `{user}` cannot open the engine's socket {socket} there")]
    DockerDenied { target: String, user: String, socket: String },
    #[error("SSH to {target} works, but its sshd does not allow forwarding to a socket")]
    ForwardingRefused { target: String },
    #[error("ssh to {target} failed: {detail}")]
    Failed { target: String, detail: String },
    #[error("ssh to {target} did not set up the connection within {seconds} s")]
    Timeout { target: String, seconds: u64 },
}

impl SshError {
    /// What the user can do about it.
    pub fn fix(&self) -> String {
        match self {
            SshError::BadAddress { .. } => {
                "write it as ssh://[user@]host[:port], as the Docker CLI takes it".to_string()
            }
            SshError::NoClient { .. } => "install the OpenSSH client (Debian: openssh-client)".to_string(),
            SshError::Unreachable { .. } => {
                "check the host name and port, that sshd runs there, and that no firewall is in the way".to_string()
            }
            SshError::HostKeyUnknown { target } => format!(
                "add the host's key to known_hosts after checking its fingerprint with the host's owner (`ssh-keyscan \
                 {} >> ~/.ssh/known_hosts`; in CI, write the pinned line from a variable)",
                keyscan_args(target)
            ),
            SshError::HostKeyChanged { target, .. } => format!(
                "find out why it changed before going on; if the host was rebuilt, remove the old key (`ssh-keygen -R \
                 {}`) and add the new one after checking its fingerprint",
                known_hosts_name(target)
            ),
            SshError::AuthRefused { user, .. } => format!(
                "load the deploy key into ssh-agent (SSH_AUTH_SOCK) or name it with IdentityFile in ~/.ssh/config \
                 (or in the file {CONFIG_ENV} names), and put its public key in {user}'s ~/.ssh/authorized_keys on the host"
            ),
            SshError::DockerDenied { user, .. } => format!(
                "add `{user}` to the docker group on the host (`usermod -aG docker {user}`), and check that Docker runs \
                 there"
            ),
            SshError::ForwardingRefused { .. } => {
                "allow it in the host's sshd_config (`AllowStreamLocalForwarding yes`, and no `DisableForwarding`; \
                 `AllowTcpForwarding no` forbids it too), or for that user in authorized_keys (no `restrict`, \
                 `no-port-forwarding`)"
                    .to_string()
            }
            SshError::Failed { .. } => "run the same `ssh` by hand (`ssh -v`) to see why".to_string(),
            SshError::Timeout { .. } => "check the network to the host (`ssh -v` shows where it hangs)".to_string(),
        }
    }
}

/// The host and port of a target's text (`ssh://u@h:2222`, `ssh://u@[::1]:22`).
fn host_port(target: &str) -> (String, Option<String>) {
    let rest = target.trim_start_matches("ssh://");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
        return (host.to_string(), after.strip_prefix(':').map(str::to_string));
    }
    match rest.split_once(':') {
        Some((host, port)) => (host.to_string(), Some(port.to_string())),
        None => (rest.to_string(), None),
    }
}

/// `ssh-keyscan`'s arguments for a target: `-p PORT HOST` or `HOST`.
fn keyscan_args(target: &str) -> String {
    match host_port(target) {
        (host, Some(port)) => format!("-p {port} {host}"),
        (host, None) => host,
    }
}

/// How known_hosts names a target: `HOST`, or `[HOST]:PORT` off port 22.
fn known_hosts_name(target: &str) -> String {
    match host_port(target) {
        (host, Some(port)) if port != "22" => format!("'[{host}]:{port}'"),
        (host, _) => host,
    }
}

/// Parse `ssh://[user@]host[:port]` as the Docker CLI takes it (no path, no query). The user and
/// host reach ssh's argv: neither may start with `-` or hold anything but name characters.
pub fn parse(url: &str) -> Result<Target, SshError> {
    let bad = |why: &str| SshError::BadAddress { url: url.to_string(), why: why.to_string() };
    let rest = url.strip_prefix("ssh://").ok_or_else(|| bad("it does not start with ssh://"))?;
    if rest.contains(['/', '?', '#']) {
        return Err(bad("a path, query or fragment after the host is not allowed (the Docker CLI refuses them too)"));
    }
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((user, hostport)) => (Some(user), hostport),
        None => (None, rest),
    };
    if let Some(user) = user {
        let ok = !user.is_empty()
            && !user.starts_with('-')
            && user.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !ok {
            return Err(bad("the user name may hold only letters, digits, `.`, `_` and `-`, and not start with `-`"));
        }
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| bad("only `:PORT` may follow an IPv6 address"))?),
        };
        (host, port)
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    let host_ok = !host.is_empty()
        && !host.starts_with('-')
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if !host_ok {
        return Err(bad("the host must be a host name or an IP address"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port must be 1–65535"))?),
    };
    Ok(Target { user: user.map(str::to_string), host: host.to_string(), port })
}

/// An open forward: a local socket reaching the remote engine's, for as long as this lives.
#[derive(Debug)]
pub struct Tunnel {
    target: Target,
    child: std::process::Child,
    socket: PathBuf,
    log: PathBuf,
    /// Holds the socket and ssh's log; removed when the tunnel goes.
    _dir: tempfile::TempDir,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The argv after `ssh` for a forward of `local` to the remote engine's socket.
pub fn forward_args(target: &Target, local: &Path, config: Option<&Path>) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    if let Some(config) = config {
        args.extend(["-F".to_string(), config.display().to_string()]);
    }
    for option in [
        // No prompts: no password, no passphrase, no "accept this host key?"; and an unknown or
        // changed host key is refused whatever the configuration says (`accept-new`, `no`).
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        // A connection of its own, which this process owns and ends: never a shared master
        // (`ControlMaster auto` + `ControlPersist`) that would carry the forward past the run.
        "ControlMaster=no",
        "ControlPath=none",
        "ExitOnForwardFailure=yes",
        "StreamLocalBindUnlink=yes",
        "ConnectTimeout=15",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=4",
    ] {
        args.extend(["-o".to_string(), option.to_string()]);
    }
    args.push("-nNT".to_string());
    if let Some(port) = target.port {
        args.extend(["-p".to_string(), port.to_string()]);
    }
    if let Some(user) = &target.user {
        args.extend(["-l".to_string(), user.clone()]);
    }
    args.extend(["-L".to_string(), format!("{}:{REMOTE_SOCKET}", local.display())]);
    args.extend(["--".to_string(), target.host.clone()]);
    args
}

impl Tunnel {
    /// Connect and forward; returns once the local socket accepts connections.
    pub async fn open(target: &Target) -> Result<Tunnel, SshError> {
        let dir = tempfile::Builder::new()
            .prefix("benchform-ssh-")
            .tempdir()
            .map_err(|e| SshError::NoClient { detail: format!("no temporary folder for the socket: {e}") })?;
        let socket = dir.path().join("docker.sock");
        let log = dir.path().join("ssh.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|e| SshError::NoClient { detail: format!("cannot write {}: {e}", log.display()) })?;
        let config = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        let args = forward_args(target, &socket, config.as_deref());
        tracing::debug!(target = %target, ?args, "opening an ssh forward to the engine");
        // ssh dies with benchform even when benchform is killed before it can stop it: util-linux's
        // `setpriv --pdeathsig` sets that up and runs ssh in its place. Where setpriv is missing,
        // a SIGKILLed benchform leaves the forward running until the connection breaks.
        let mut command = match setpriv() {
            Some(setpriv) => {
                let mut c = std::process::Command::new(setpriv);
                c.args(["--pdeathsig", "TERM", "--", "ssh"]);
                c
            }
            None => std::process::Command::new("ssh"),
        };
        command.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
        // Its own process group: a Ctrl-C on the terminal is benchform's to handle.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(|e| SshError::NoClient { detail: e.to_string() })?;
        let mut tunnel = Tunnel { target: target.clone(), child, socket, log, _dir: dir };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = tunnel.child.try_wait() {
                return Err(tunnel.failure(status.code()));
            }
            if tokio::net::UnixStream::connect(&tunnel.socket).await.is_ok() {
                return Ok(tunnel);
            }
            if started.elapsed() > SETUP_TIMEOUT {
                return Err(SshError::Timeout { target: target.to_string(), seconds: SETUP_TIMEOUT.as_secs() });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The local end, as an engine address (`unix://…`).
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// What ssh logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Why the engine did not answer through an open tunnel: the remote side could not open the
    /// engine's socket (no permission, or no engine), if ssh said so.
    pub fn engine_refused(&self) -> Option<SshError> {
        classify(&self.target, &self.log(), None)
            .filter(|e| matches!(e, SshError::DockerDenied { .. } | SshError::ForwardingRefused { .. }))
    }

    fn failure(&self, code: Option<i32>) -> SshError {
        classify(&self.target, &self.log(), code).unwrap_or_else(|| SshError::Failed {
            target: self.target.to_string(),
            detail: format!("ssh exited with {}", code.map_or("a signal".to_string(), |c| c.to_string())),
        })
    }
}

/// Read ssh's stderr: which failure it reports, if any. `code` is ssh's exit status, when it ended.
pub fn classify(target: &Target, log: &str, code: Option<i32>) -> Option<SshError> {
    let t = target.to_string();
    let user = target.user.clone().unwrap_or_else(|| "(your login name or the User in ssh_config)".to_string());
    if log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") || log.contains("has changed and you have requested") {
        let known_hosts = log
            .lines()
            .find_map(|l| {
                l.strip_prefix("Offending ").and_then(|r| r.split_once(" key in ")).map(|(_, f)| f.to_string())
            })
            .unwrap_or_else(|| "known_hosts".to_string());
        return Some(SshError::HostKeyChanged { target: t, known_hosts });
    }
    if log.contains("Host key verification failed") {
        return Some(SshError::HostKeyUnknown { target: t });
    }
    if log.contains("Permission denied (") || log.contains("Too many authentication failures") {
        return Some(SshError::AuthRefused { target: t, user });
    }
    if log.contains("administratively prohibited") {
        return Some(SshError::ForwardingRefused { target: t });
    }
    if log.contains("open failed") {
        return Some(SshError::DockerDenied { target: t, user, socket: REMOTE_SOCKET.to_string() });
    }
    let unreachable = [
        "Could not resolve hostname",
        "Connection refused",
        "Connection timed out",
        "No route to host",
        "Network is unreachable",
        "Connection closed by",
        "Connection reset",
        "kex_exchange_identification",
    ];
    if let Some(line) = log.lines().find(|l| unreachable.iter().any(|u| l.contains(u))) {
        return Some(SshError::Unreachable { target: t, detail: line.trim().trim_start_matches("ssh: ").to_string() });
    }
    code.map(|code| {
        let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string();
        SshError::Failed { target: t, detail: format!("ssh exited with {code}: {last}") }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_parsed_as_the_docker_cli_takes_them() {
        let t = parse("ssh://deploy@prod.example.com:2222").unwrap();
        assert_eq!(t, Target { user: Some("deploy".into()), host: "prod.example.com".into(), port: Some(2222) });
        assert_eq!(t.to_string(), "ssh://deploy@prod.example.com:2222");
        assert_eq!(parse("ssh://10.0.0.2").unwrap().user, None);
        let v6 = parse("ssh://u@[::1]:22").unwrap();
        assert_eq!((v6.host.as_str(), v6.to_string().as_str()), ("::1", "ssh://u@[::1]:22"));
        for bad in [
            "ssh://-oProxyCommand=x",
            "ssh://-l@host",
            "ssh://u@host/var/run/docker.sock",
            "ssh://u@host:0",
            "ssh://u@host:99999",
            "ssh://u@",
            "ssh://u v@host",
            "ssh://u@ho;st",
            "ssh://u@[::1]junk",
        ] {
            assert!(matches!(parse(bad), Err(SshError::BadAddress { .. })), "{bad} was accepted");
        }
    }

    #[test]
    fn the_forward_is_an_argv_with_checking_on_and_no_prompts() {
        let t = parse("ssh://deploy@h:2222").unwrap();
        let args = forward_args(&t, Path::new("/tmp/x/docker.sock"), Some(Path::new("/etc/cfg")));
        let joined = args.join(" ");
        assert!(joined.starts_with("-F /etc/cfg "), "{joined}");
        assert!(joined.contains("-o BatchMode=yes -o StrictHostKeyChecking=yes"), "{joined}");
        assert!(joined.contains("-o ControlMaster=no -o ControlPath=none"), "{joined}");
        assert!(joined.ends_with("-p 2222 -l deploy -L /tmp/x/docker.sock:/var/run/docker.sock -- h"), "{joined}");
    }

    #[test]
    fn what_ssh_says_becomes_an_error_with_its_fix() {
        let t = parse("ssh://deploy@10.0.0.2").unwrap();
        let case = |log: &str| classify(&t, log, Some(255)).unwrap();
        assert!(matches!(
            case(
                "No ED25519 host key is known for 10.0.0.2 and you have requested strict checking.\nHost key verification failed.\n"
            ),
            SshError::HostKeyUnknown { .. }
        ));
        let changed = case(
            "@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nOffending ED25519 key in /home/ci/.ssh/known_hosts:3\nHost key verification failed.\n",
        );
        assert_eq!(
            changed,
            SshError::HostKeyChanged {
                target: "ssh://deploy@10.0.0.2".into(),
                known_hosts: "/home/ci/.ssh/known_hosts:3".into()
            }
        );
        assert!(changed.fix().contains("ssh-keygen -R 10.0.0.2`"), "{}", changed.fix());
        let on_2222 = classify(&parse("ssh://u@h:2222").unwrap(), "REMOTE HOST IDENTIFICATION HAS CHANGED", Some(255));
        assert!(on_2222.unwrap().fix().contains("ssh-keygen -R '[h]:2222'"));
        assert!(matches!(
            classify(&t, "channel 1: open failed: administratively prohibited: open failed\n", None),
            Some(SshError::ForwardingRefused { .. })
        ));
        assert!(matches!(case("deploy@10.0.0.2: Permission denied (publickey).\n"), SshError::AuthRefused { .. }));
        assert!(matches!(
            case("ssh: connect to host 10.0.0.2 port 22: Connection refused\n"),
            SshError::Unreachable { detail, .. } if detail == "connect to host 10.0.0.2 port 22: Connection refused"
        ));
        assert!(matches!(
            classify(&t, "channel 1: open failed: connect failed: open failed\n", None),
            Some(SshError::DockerDenied { .. })
        ));
        assert_eq!(classify(&t, "", None), None);
        let p = parse("ssh://deploy@h:2222").unwrap();
        assert!(
            classify(&p, "Host key verification failed.\n", Some(255)).unwrap().fix().contains("ssh-keyscan -p 2222 h")
        );
    }
}
