//! keel as a child process, configured by environment, logging JSON: the real binary, or the
//! test bed ([`super::testbed`]'s kinds and routes) served by this very test binary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for a log line before failing: generous, so that only a line that
/// never comes fails the test, never a slow machine.
const LOG_WAIT: Duration = Duration::from_secs(60);

/// keel as a child process, with its JSON log lines readable one by one.
pub struct Process {
    pub child: Child,
    /// Lines of stdout, read by a thread of their own so that waiting for one can time out.
    lines: Receiver<String>,
    /// The JSON lines logged before `listening`.
    pub startup: Vec<Value>,
}

impl Process {
    /// The real `keel` binary, with keel's own kinds and routes.
    pub fn start(vars: &[(&str, &str)]) -> (Self, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command.env_clear();
        Self::spawn(command, vars)
    }

    /// The test bed, served the way `keel serve` serves: this test binary runs again, as a
    /// child, with only [`serve_the_testbed`] selected.
    pub fn testbed(vars: &[(&str, &str)]) -> (Self, String) {
        let mut command = Command::new(std::env::current_exe().expect("the test binary's path"));
        // Quiet, so that the harness writes nothing but a final `.` among keel's JSON lines.
        command.args(["--exact", "support::process::serve_the_testbed", "--ignored", "--nocapture", "--quiet"]);
        command.env_clear().env(TESTBED, "1");
        Self::spawn(command, vars)
    }

    /// Starts `command` (its environment already cleared) with `vars` over the test settings.
    fn spawn(mut command: Command, vars: &[(&str, &str)]) -> (Self, String) {
        command
            .env("APP_ENV", "test")
            .env("APP_LOG__FORMAT", "json")
            .env("APP_LOG__FILTER", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in vars {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("keel starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = Self { child, lines, startup: Vec::new() };
        let mut startup = Vec::new();
        let listening = process.wait_for_log(|line| {
            startup.push(line.clone());
            line["message"] == "listening"
        });
        process.startup = startup;
        let address = listening["address"].as_str().expect("the address is logged").to_owned();
        (process, address)
    }

    /// Reads log lines until one matches; panics if the process ends first or no line matches
    /// within [`LOG_WAIT`].
    pub fn wait_for_log(&mut self, mut wanted: impl FnMut(&Value) -> bool) -> Value {
        let deadline = Instant::now() + LOG_WAIT;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    if let Ok(entry) = serde_json::from_str::<Value>(&line)
                        && wanted(&entry)
                    {
                        return entry;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => panic!("keel exited before logging the expected line"),
                Err(RecvTimeoutError::Timeout) => panic!("no expected log line within {LOG_WAIT:?}"),
            }
        }
    }

    pub fn terminate(&self) {
        // The shell's built-in `kill`: slim images have no procps, so no `kill` binary.
        let status = Command::new("sh").args(["-c", &format!("kill -TERM {}", self.child.id())]).status().unwrap();
        assert!(status.success());
    }
}

/// A failing test must not leave a server behind.
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Set in the environment of a test bed's child process.
const TESTBED: &str = "KEEL_TESTBED";

/// The test bed's server, in the child process [`Process::testbed`] starts; it returns at once
/// anywhere else (`cargo test -- --ignored`, say).
#[test]
#[ignore = "the test bed's server: runs in the child process that Process::testbed starts"]
fn serve_the_testbed() {
    if std::env::var_os(TESTBED).is_none() {
        return;
    }
    let settings = keel::config::load().expect("the test bed's settings load");
    if keel_http::server::serve(settings, super::testbed::registry(), super::testbed::routes()).is_err() {
        std::process::exit(1);
    }
}
