//! keel as a child process: the real binary, configured by environment, logging JSON.

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
    pub fn start(vars: &[(&str, &str)]) -> (Self, String) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command
            .env_clear()
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
