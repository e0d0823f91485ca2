//! Modes a command opens and `exit` closes, each with a prompt and commands of its own, as the
//! vendors' CLIs print them: Junos `start shell` (FreeBSD's csh), classic IOS-XR `admin`, EOS
//! `bash`, NX-OS `run bash`.

#[derive(Debug, PartialEq, Eq)]
pub struct SubShell {
    pub enter: &'static str,
    /// Printed on entering.
    pub greeting: &'static str,
    /// `{h}` hostname, `{u}` user.
    pub prompt: &'static str,
    pub exit: &'static str,
    /// Commands it knows, with what they print (`{h}`, `{u}` as in the prompt).
    pub commands: &'static [(&'static str, &'static str)],
    /// What an unknown command prints; `{cmd}` is its first word.
    pub error: &'static str,
    /// Opened only from privileged mode.
    pub privileged: bool,
}

const JUNOS_SHELL: SubShell = SubShell {
    enter: "start shell",
    greeting: "",
    prompt: "{u}@{h}:~ % ",
    exit: "exit",
    commands: &[
        (
            "uname -a",
            "FreeBSD {h} JNPR-12.1-20210224.6d8a5ab_buil FreeBSD 12.1-RELEASE-p9 #0 6d8a5ab amd64",
        ),
        ("id", "uid=2000({u}) gid=20(staff) groups=20(staff)"),
    ],
    error: "{cmd}: Command not found.",
    privileged: false,
};

const XR_ADMIN: SubShell = SubShell {
    enter: "admin",
    greeting: "",
    prompt: "RP/0/RP0/CPU0:{h}(admin)#",
    exit: "exit",
    commands: &[(
        "show platform",
        "Node            Type                      State            Config State\n-----------------------------------------------------------------------------\n0/RP0/CPU0      ASR9K-RSP880-SE(Active)   IOS XR RUN       PWR,NSHUT,MON",
    )],
    error: "% Invalid input detected at '^' marker.",
    privileged: false,
};

const EOS_BASH: SubShell = SubShell {
    enter: "bash",
    greeting: "\nArista Networks EOS shell\n",
    prompt: "[{u}@{h} ~]$ ",
    exit: "exit",
    commands: &[(
        "uname -a",
        "Linux {h} 4.19.142.Ar-31343410.4301F #1 SMP PREEMPT x86_64 x86_64 x86_64 GNU/Linux",
    )],
    error: "bash: {cmd}: command not found",
    privileged: true,
};

const NXOS_BASH: SubShell = SubShell {
    enter: "run bash",
    greeting: "",
    prompt: "bash-4.3$ ",
    exit: "exit",
    commands: &[(
        "uname -a",
        "Linux {h} 4.19.106-yocto-standard #1 SMP x86_64 x86_64 x86_64 GNU/Linux",
    )],
    error: "bash: {cmd}: command not found",
    privileged: true,
};

/// The modes of this kind a device type has.
pub fn of(device_type: &str) -> &'static [SubShell] {
    match device_type {
        "juniper_junos" => &[JUNOS_SHELL],
        "cisco_xr" => &[XR_ADMIN],
        "arista_eos" => &[EOS_BASH],
        "cisco_nxos" => &[NXOS_BASH],
        _ => &[],
    }
}
