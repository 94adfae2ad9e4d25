//! keel as a child process: the real binary, configured by environment, logging JSON.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// keel as a child process, with its JSON log lines readable one by one.
pub struct Process {
    pub child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
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
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut process = Self { child, lines };
        let listening = process.wait_for_log(|line| line["message"] == "listening");
        let address = listening["address"].as_str().expect("the address is logged").to_owned();
        (process, address)
    }

    /// Reads log lines until one matches; panics if the process ends first.
    pub fn wait_for_log(&mut self, mut wanted: impl FnMut(&Value) -> bool) -> Value {
        for line in self.lines.by_ref() {
            let line = line.expect("stdout reads");
            if let Ok(entry) = serde_json::from_str::<Value>(&line)
                && wanted(&entry)
            {
                return entry;
            }
        }
        panic!("keel exited before logging the expected line");
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
