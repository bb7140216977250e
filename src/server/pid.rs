//! Process ids: the `server.pid_file` that `run` keeps, and finding a running gateway by a
//! pid or a pid file (`ringway reload`, `run --upgrade-from`), with a stale file told apart
//! from a running process.

use std::path::{Path, PathBuf};

/// `server.pid_file`: written once the listeners are up, removed at exit if it still holds
/// this process's id (after a binary upgrade it holds the successor's, which stays).
pub struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    pub fn write(path: &Path) -> Result<PidFile, String> {
        let pid = std::process::id();
        std::fs::write(path, format!("{pid}\n"))
            .map_err(|e| format!("server.pid_file: cannot write {}: {e}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
            pid,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read(&self.path).is_ok_and(|p| p as u32 == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The process id in a pid file (one decimal number, whitespace around it allowed).
pub fn read(file: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{}: no such pid file (is the gateway running, from this directory?)",
                file.display()
            )
        } else {
            format!("{}: {e}", file.display())
        }
    })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| format!("{}: does not hold a process id", file.display()))
}

/// Does process `pid` exist? (`kill(pid, 0)`: `EPERM` means it exists but is not ours.)
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A running process named by `file`: its id, or why not (missing file, no id in it, or a
/// stale file whose process is gone).
pub fn running(file: &Path) -> Result<i32, String> {
    let pid = read(file)?;
    if alive(pid) {
        Ok(pid)
    } else {
        Err(format!(
            "{}: process {pid} is not running (stale pid file)",
            file.display()
        ))
    }
}

/// `--upgrade-from` and friends: a number is a pid, anything else a pid file.
pub fn running_by_arg(arg: &str) -> Result<i32, String> {
    match arg.parse::<i32>() {
        Ok(pid) if pid > 0 => {
            if alive(pid) {
                Ok(pid)
            } else {
                Err(format!("process {pid} is not running"))
            }
        }
        Ok(pid) => Err(format!("{pid} is not a process id")),
        Err(_) => running(Path::new(arg)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_is_read_and_its_process_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ringway.pid");
        let missing = running(&file).unwrap_err();
        assert!(missing.contains("no such pid file"), "{missing}");

        std::fs::write(&file, " 12x\n").unwrap();
        assert!(
            running(&file)
                .unwrap_err()
                .contains("does not hold a process id")
        );

        let me = std::process::id() as i32;
        std::fs::write(&file, format!("{me}\n")).unwrap();
        assert_eq!(running(&file), Ok(me));
        assert_eq!(running_by_arg(&me.to_string()), Ok(me));
        assert_eq!(running_by_arg(file.to_str().unwrap()), Ok(me));

        // A process that has exited and been reaped: its id is free (pids are not reused
        // this quickly).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id() as i32;
        child.wait().unwrap();
        std::fs::write(&file, format!("{gone}\n")).unwrap();
        let stale = running(&file).unwrap_err();
        assert!(
            stale.contains(&format!("process {gone} is not running (stale pid file)")),
            "{stale}"
        );
        assert!(running_by_arg("0").is_err());
    }

    #[test]
    fn the_pid_file_is_removed_only_while_it_names_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ringway.pid");
        drop(PidFile::write(&file).unwrap());
        assert!(!file.exists());
        let ours = PidFile::write(&file).unwrap();
        // A successor (binary upgrade) wrote its own id: ours must leave it.
        std::fs::write(&file, "1\n").unwrap();
        drop(ours);
        assert_eq!(read(&file), Ok(1));
    }
}
