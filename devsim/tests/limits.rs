//! devsim checks at start that its devices fit in the descriptor limit (a listener and a
//! connection each), after raising the soft limit to the hard one.

use std::io::BufRead;
use std::process::{Command, Stdio};

fn devsim(devices: usize) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -Sn 64 && ulimit -Hn 512 && exec \"$0\" --devices cisco_ios={devices}"
        ))
        .arg(env!("CARGO_BIN_EXE_devsim"))
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn more_devices_than_descriptors_are_refused_and_fewer_are_served() {
    // 512 descriptors hold (512 - 64) / 2 = 224 devices.
    let out = devsim(300).wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("300 devices need 664 file descriptors")
            && err.contains("hard RLIMIT_NOFILE is 512")
            && err.contains("at most 224 each"),
        "{err}"
    );
    // 200 fit: the soft limit of 64 is raised, and all of them listen.
    let mut child = devsim(200);
    // The read below ends by itself; should devsim hang, it is killed after 30 s (until it is
    // reaped, its pid names no other process).
    let pid = child.id() as i32;
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if watchdog
            .recv_timeout(std::time::Duration::from_secs(30))
            .is_err()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let served = lines
        .map_while(Result::ok)
        .take_while(|l| l != "ready")
        .filter(|l| l.contains("\"addr\""))
        .count();
    let _ = child.kill();
    let _ = done.send(());
    let _ = child.wait();
    assert_eq!(served, 200);
}
