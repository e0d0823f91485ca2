//! Devices whose CLI is not IOS-like: candidate configurations (PAN-OS, VyOS, VRP8, SR OS,
//! SR Linux), views (Comware), no configuration mode at all (ExtremeXOS, AOS, RouterOS,
//! FortiOS, Gaia, SAOS), prompts of two lines or with counters and markers.

use crate::model::{Commit, ConfigModel, Model, Prompts, SaveModel, saves};

const MORE: &str = " --More-- ";
const ERASE: &str =
    "\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08";

/// Configuration words of Huawei's and H3C's views.
const VRP_WORDS: &[&str] = &[
    "description",
    "sysname",
    "undo",
    "shutdown",
    "ntp-service",
    "snmp-agent",
];

const fn same(p: &'static str) -> Prompts {
    Prompts {
        user: p,
        enable: p,
        config: p,
        section: p,
    }
}

/// A device without configuration mode, privileged from login; each model fills in the rest.
const FLAT: Model = Model {
    device_type: "",
    banner: "",
    login_question: None,
    prompts: same("{h}# "),
    unsaved_marker: "",
    candidate_marks: ("", ""),
    enable: None,
    paging_off: &[],
    paging_reply: "",
    accepted: &[],
    more: MORE,
    more_erase: ERASE,
    error: "",
    caret: false,
    version: ("show version", ""),
    long_command: "show tech-support",
    show_config: "show configuration",
    config: None,
    exec_words: &[],
    exec_blocks: (&[], &[]),
    save: None,
    sample_config: &[],
    sample_shows: "",
};

pub(crate) static EXTREME_EXOS: Model = Model {
    device_type: "extreme_exos",
    banner: "\nExtremeXOS\nCopyright (C) 1996-2023 Extreme Networks. All rights reserved.\n\n",
    // The number counts commands; the star means the configuration is not saved.
    prompts: same("{*}{h}.{n} # "),
    unsaved_marker: "* ",
    paging_off: &["disable clipaging"],
    accepted: &["disable cli prompting"],
    error: "\x07%% Invalid input detected at '^' marker.",
    caret: true,
    version: (
        "show version",
        "Switch      : 800745-00-06 1736G-00123 Rev 6.0 BootROM: 2.0.1.8    IMG: 31.7.1.4\nImage   : ExtremeXOS version 31.7.1.4 by release-manager",
    ),
    exec_words: &["configure", "create", "enable", "disable", "delete"],
    save: Some(SaveModel {
        command: "save configuration",
        questions: &[(
            "Do you want to save configuration to primary.cfg and overwrite it? (y/N) ",
            "y",
        )],
        text: "Saving configuration on master ....... done!\nConfiguration saved to primary.cfg successfully.",
        in_config: false,
    }),
    sample_config: &["configure snmp sysContact netpulse-test"],
    sample_shows: "configure snmp sysContact netpulse-test",
    ..FLAT
};

pub(crate) static ALCATEL_AOS: Model = Model {
    device_type: "alcatel_aos",
    banner: "\nWelcome to the Alcatel-Lucent Enterprise OS6860E-48 8.7.354.R01 GA\n\n",
    prompts: same("{h}-> "),
    // No paging-off command: the pager is answered.
    error: "ERROR: Invalid entry: \"{cmd}\"",
    version: (
        "show system",
        "System:\n  Description:  Alcatel-Lucent Enterprise OS6860E-48 8.7.354.R01 GA,\n  Name:         {h},",
    ),
    show_config: "show configuration snapshot",
    exec_words: &["vlan", "system", "ip", "snmp", "ntp"],
    save: saves(
        "write memory",
        "File /flash/working/vcboot.cfg replaced.\nFile /flash/working/vcsetup.cfg replaced.",
    ),
    sample_config: &["system contact netpulse-test"],
    sample_shows: "system contact netpulse-test",
    ..FLAT
};

pub(crate) static PALOALTO_PANOS: Model = Model {
    device_type: "paloalto_panos",
    banner: "Last login: Tue Nov 24 10:00:00 2026 from 192.0.2.10\n\nNumber of failed attempts since last successful login: 0\n\n\n",
    // An HA pair shows its state beside the hostname.
    prompts: Prompts {
        user: "{u}@{h}(active)> ",
        enable: "{u}@{h}(active)> ",
        config: "\n[edit]\n{u}@{h}(active)# ",
        section: "\n[edit]\n{u}@{h}(active)# ",
    },
    paging_off: &["set cli pager off"],
    accepted: &["set cli scripting-mode on", "set cli terminal width *"],
    error: "Invalid syntax.",
    version: (
        "show system info",
        "hostname: {h}\nmodel: PA-VM\nsw-version: 10.2.7-h3",
    ),
    long_command: "show system state",
    show_config: "show config running",
    config: Some(ConfigModel {
        enter: "configure",
        enter_text: "Entering configuration mode",
        enter_question: None,
        exit: "exit",
        exit_text: "Exiting configuration mode",
        sections: &[],
        words: &["set", "delete"],
        commit: Some(Commit {
            command: "commit",
            compare: "show config diff",
            text: "Commit job 41 is in progress. Use Ctrl+C to return to command prompt\n..55%...100%\nConfiguration committed successfully",
            abort: "revert config",
            abort_text: "Reverting configuration...",
            commit_leaves: false,
            abort_leaves: false,
            persists: true,
        }),
    }),
    sample_config: &["set deviceconfig system login-banner netpulse-test"],
    sample_shows: "set deviceconfig system login-banner netpulse-test",
    ..FLAT
};

const VYOS_CONFIG: ConfigModel = ConfigModel {
    enter: "configure",
    enter_text: "",
    enter_question: None,
    exit: "exit",
    exit_text: "exit",
    sections: &[],
    words: &["set", "delete"],
    commit: Some(Commit {
        command: "commit",
        compare: "compare",
        text: "",
        abort: "discard",
        abort_text: "  Changes have been discarded",
        commit_leaves: false,
        abort_leaves: false,
        persists: false,
    }),
};

pub(crate) const VYOS: Model = Model {
    device_type: "vyos",
    banner: "Welcome to VyOS!\n\n   Check out project news at https://blog.vyos.io\n   and feel free to report bugs at https://vyos.dev\n\n",
    prompts: Prompts {
        user: "{u}@{h}:~$ ",
        enable: "{u}@{h}:~$ ",
        config: "[edit]\n{u}@{h}# ",
        section: "[edit]\n{u}@{h}# ",
    },
    paging_off: &["set terminal length 0"],
    accepted: &["set terminal width *"],
    error: "\n  Invalid command: [{cmd}]\n",
    version: (
        "show version",
        "Version:          VyOS 1.4.0\nRelease train:    sagitta",
    ),
    show_config: "show configuration commands",
    config: Some(VYOS_CONFIG),
    save: Some(SaveModel {
        command: "save",
        questions: &[],
        text: "Saving configuration to '/config/config.boot'...\nDone",
        in_config: true,
    }),
    sample_config: &["set interfaces ethernet eth0 description netpulse-test"],
    sample_shows: "set interfaces ethernet eth0 description netpulse-test",
    ..FLAT
};

pub(crate) static UBIQUITI_EDGEROUTER: Model = Model {
    device_type: "ubiquiti_edgerouter",
    banner: "Welcome to EdgeOS\n\nBy logging in, accessing, or using the Ubiquiti product, you\nacknowledge that you have read and understood the Ubiquiti\nLicense Agreement.\n\n",
    paging_off: &["terminal length 0"],
    accepted: &["terminal width *"],
    version: (
        "show version",
        "Version:      v2.0.9-hotfix.7\nBuild ID:     5611225\nHW model:     EdgeRouter X 5-Port",
    ),
    ..VYOS
};

pub(crate) static HUAWEI_VRPV8: Model = Model {
    device_type: "huawei_vrpv8",
    banner: "\nInfo: The max number of VTY users is 21, the number of current VTY users online is 1, and total number of terminal users online is 1.\n      The current login time is 2026-11-25 10:00:00.\n",
    // `~` in a system view; `*` once there are uncommitted changes.
    prompts: Prompts {
        user: "<{h}>",
        enable: "<{h}>",
        config: "[{c}{h}]",
        section: "[{c}{h}-{s}]",
    },
    candidate_marks: ("~", "*"),
    paging_off: &["screen-length 0 temporary"],
    paging_reply: "Info: The configuration takes effect on the current user terminal interface only.",
    more: "  ---- More ----",
    more_erase: "\x1b[42D                                          \x1b[42D",
    error: "Error: Unrecognized command found at '^' position.",
    caret: true,
    version: (
        "display version",
        "Huawei Versatile Routing Platform Software\nVRP (R) software, Version 8.180 (CE6881 V300R020C10SPC200)\nCopyright (C) 2012-2023 Huawei Technologies Co., Ltd.",
    ),
    long_command: "display diagnostic-information",
    show_config: "display current-configuration",
    config: Some(ConfigModel {
        enter: "system-view",
        enter_text: "Enter system view, return user view with return command.",
        enter_question: None,
        exit: "return",
        exit_text: "",
        sections: &[("interface", "")],
        words: VRP_WORDS,
        commit: Some(Commit {
            command: "commit",
            compare: "display configuration candidate changes",
            text: "",
            abort: "abort",
            abort_text: "",
            commit_leaves: false,
            abort_leaves: true,
            persists: false,
        }),
    }),
    save: Some(SaveModel {
        command: "save",
        questions: &[(
            "Warning: The current configuration will be written to the device. Continue? [Y/N]:",
            "y",
        )],
        text: "Now saving the current configuration to the slot 1 ....\nInfo: Save the configuration successfully.",
        in_config: false,
    }),
    sample_config: &["interface 10GE1/0/1", "description netpulse-test"],
    sample_shows: " description netpulse-test",
    ..FLAT
};

pub(crate) static HP_COMWARE: Model = Model {
    device_type: "hp_comware",
    banner: "\n******************************************************************************\n* Copyright (c) 2004-2023 New H3C Technologies Co., Ltd. All rights reserved.*\n* Without the owner's prior written consent,                                 *\n* no decompiling or reverse-engineering shall be allowed.                    *\n******************************************************************************\n\n",
    prompts: Prompts {
        user: "<{h}>",
        enable: "<{h}>",
        config: "[{h}]",
        section: "[{h}-{s}]",
    },
    paging_off: &["screen-length disable"],
    more: "---- More ----",
    more_erase: "\x1b[16D                \x1b[16D",
    error: "% Unrecognized command found at '^' position.",
    caret: true,
    version: (
        "display version",
        "H3C Comware Software, Version 7.1.070, Release 6635P07\nCopyright (c) 2004-2023 New H3C Technologies Co., Ltd. All rights reserved.",
    ),
    long_command: "display diagnostic-information",
    show_config: "display current-configuration",
    config: Some(ConfigModel {
        enter: "system-view",
        enter_text: "System View: return to User View with Ctrl+Z.",
        enter_question: None,
        exit: "return",
        exit_text: "",
        sections: &[("interface", "")],
        words: VRP_WORDS,
        commit: None,
    }),
    save: Some(SaveModel {
        command: "save",
        questions: &[
            (
                "The current configuration will be written to the device. Are you sure? [Y/N]:",
                "y",
            ),
            (
                "Please input the file name(*.cfg)[flash:/startup.cfg]\n(To leave the existing filename unchanged, press the enter key):",
                "",
            ),
            ("flash:/startup.cfg exists, overwrite? [Y/N]:", "y"),
        ],
        text: "Validating file. Please wait...\nSaved the current configuration to mainboard device successfully.",
        in_config: false,
    }),
    sample_config: &[
        "interface GigabitEthernet1/0/1",
        "description netpulse-test",
    ],
    sample_shows: " description netpulse-test",
    ..FLAT
};

pub(crate) static NOKIA_SROS: Model = Model {
    device_type: "nokia_sros",
    banner: "\n SR OS Software\n Copyright (c) Nokia 2023.  All Rights Reserved.\n\n",
    // MD-CLI: the context line above the prompt shows the configuration mode.
    prompts: Prompts {
        user: "\n[/]\nA:{u}@{h}# ",
        enable: "\n[/]\nA:{u}@{h}# ",
        config: "\n{c}(ex)[/]\nA:{u}@{h}# ",
        section: "\n{c}(ex)[/]\nA:{u}@{h}# ",
    },
    candidate_marks: ("", "*"),
    paging_off: &["environment more false"],
    accepted: &["environment console width *"],
    more: "Press any key to continue (Q to quit)",
    more_erase: "\r                                     \r",
    error: "MINOR: CLI #2004: Unknown element - '{cmd}'",
    version: (
        "show version",
        "TiMOS-C-23.10.R1 cpm/x86_64 Nokia 7750 SR Copyright (c) 2000-2023 Nokia.\nAll rights reserved. All use subject to applicable license agreements.",
    ),
    long_command: "show log log-id 99",
    show_config: "admin show configuration",
    config: Some(ConfigModel {
        enter: "edit-config exclusive",
        enter_text: "INFO: CLI #2060: Entering exclusive configuration mode\nINFO: CLI #2061: Uncommitted changes are discarded on configuration mode exit",
        enter_question: None,
        exit: "quit-config",
        exit_text: "INFO: CLI #2064: Exiting exclusive configuration mode",
        sections: &[],
        words: &["/configure", "delete"],
        commit: Some(Commit {
            command: "commit",
            compare: "compare",
            text: "",
            abort: "discard",
            abort_text: "",
            commit_leaves: false,
            abort_leaves: false,
            persists: false,
        }),
    }),
    save: saves(
        "admin save",
        "Writing configuration to cf3:\\config.cfg\nSaving configuration ... OK\nCompleted.",
    ),
    sample_config: &["/configure system location netpulse-test"],
    sample_shows: "/configure system location netpulse-test",
    ..FLAT
};

pub(crate) static NOKIA_SRL: Model = Model {
    device_type: "nokia_srl",
    banner: "Using configuration file(s): []\nWelcome to the srlinux CLI.\nType 'help' (and press <ENTER>) if you need any help using this.\n",
    prompts: Prompts {
        user: "\n--{ running }--[  ]--\nA:{h}# ",
        enable: "\n--{ running }--[  ]--\nA:{h}# ",
        config: "\n--{ {c}candidate shared default }--[  ]--\nA:{h}# ",
        section: "\n--{ {c}candidate shared default }--[  ]--\nA:{h}# ",
    },
    candidate_marks: ("", "+ "),
    paging_off: &["environment cli-engine type basic"],
    accepted: &["environment complete-on-space false"],
    error: "Parsing error: Unknown token '{cmd}'. Options are ['back', 'bash', 'commit', 'diff', 'discard', 'enter', 'environment', 'exit', 'info', 'quit', 'save', 'show', 'tools', 'tree']",
    version: (
        "show version",
        "Hostname             : {h}\nChassis Type         : 7220 IXR-D2L\nSoftware Version     : v23.10.1",
    ),
    long_command: "info from state",
    show_config: "info flat",
    config: Some(ConfigModel {
        enter: "enter candidate",
        enter_text: "",
        enter_question: None,
        exit: "enter running",
        exit_text: "",
        sections: &[],
        words: &["set", "delete"],
        commit: Some(Commit {
            command: "commit now",
            compare: "diff",
            text: "All changes have been committed. Leaving candidate mode.",
            abort: "discard now",
            abort_text: "",
            commit_leaves: true,
            abort_leaves: true,
            persists: false,
        }),
    }),
    save: saves(
        "save startup",
        "/system:\n    Saved current running configuration as initial (startup) configuration '/etc/opt/srlinux/config.json'",
    ),
    sample_config: &["set / interface ethernet-1/1 description netpulse-test"],
    sample_shows: "set / interface ethernet-1/1 description netpulse-test",
    ..FLAT
};

pub(crate) static MIKROTIK_ROUTEROS: Model = Model {
    device_type: "mikrotik_routeros",
    banner: "\n\n\n  MMM      MMM       KKK                          TTTTTTTTTTT      KKK\n  MMMM    MMMM       KKK                          TTTTTTTTTTT      KKK\n  MMM MMMM MMM  III  KKK  KKK  RRRRRR     OOOOOO      TTT     III  KKK  KKK\n  MMM  MM  MMM  III  KKKKK     RRR  RRR  OOO  OOO     TTT     III  KKKKK\n  MMM      MMM  III  KKK KKK   RRRRRR    OOO  OOO     TTT     III  KKK KKK\n  MMM      MMM  III  KKK  KKK  RRR  RRR   OOOOOO      TTT     III  KKK  KKK\n\n  MikroTik RouterOS 7.12 (c) 1999-2023       https://www.mikrotik.com/\n\n",
    // Asked at the first login of a new router.
    login_question: Some("\nDo you want to see the software license? [Y/n]: "),
    prompts: same("[{u}@{h}] > "),
    more: "-- [Q quit|D dump|down]",
    more_erase: "\r                       \r",
    error: "bad command name {cmd} (line 1 column 1)",
    version: (
        "/system resource print",
        "                   uptime: 3w2d4h\n                  version: 7.12 (stable)\n               board-name: CHR\n                 platform: MikroTik",
    ),
    long_command: "/log print",
    show_config: "/export",
    exec_words: &["/ip", "/interface", "/system"],
    sample_config: &["/interface ethernet set ether1 comment=netpulse-test"],
    sample_shows: "/interface ethernet set ether1 comment=netpulse-test",
    ..FLAT
};

pub(crate) static FORTINET: Model = Model {
    device_type: "fortinet",
    prompts: Prompts {
        user: "{h} # ",
        enable: "{h} # ",
        config: "{h} # ",
        section: "{h} ({s}) # ",
    },
    // Paging stops only inside `config system console`.
    paging_off: &["set output standard"],
    error: "Unknown action 0",
    version: (
        "get system status",
        "Version: FortiGate-VM64 v7.2.5,build1517,230606 (GA.F)\nHostname: {h}",
    ),
    long_command: "diagnose debug report",
    show_config: "show full-configuration",
    exec_words: &["set", "unset"],
    exec_blocks: (&["config", "edit"], &["next", "end"]),
    sample_config: &["config system global", "set alias netpulse-test", "end"],
    sample_shows: " set alias netpulse-test",
    ..FLAT
};

pub(crate) static CHECKPOINT_GAIA: Model = Model {
    device_type: "checkpoint_gaia",
    banner: "This system is for authorized use only.\n",
    prompts: same("{h}> "),
    paging_off: &["set clienv rows 0"],
    error: "CLINFR0329  Invalid command:'{cmd}'.",
    version: (
        "show version all",
        "Product version Check Point Gaia R81.20\nOS build 631\nOS kernel version 3.10.0-957.21.3cpx86_64",
    ),
    long_command: "show route all",
    exec_words: &["set", "add", "delete"],
    save: saves("save config", ""),
    sample_config: &["set interface eth1 comments netpulse-test"],
    sample_shows: "set interface eth1 comments netpulse-test",
    ..FLAT
};

pub(crate) static CIENA_SAOS: Model = Model {
    device_type: "ciena_saos",
    banner: "\nCiena 3930 Service Delivery Switch\n",
    // The star means unsaved changes.
    prompts: same("{h}{*}> "),
    unsaved_marker: "*",
    paging_off: &["system shell session set more off"],
    error: "SHELL PARSER FAILURE: '{cmd}' - invalid input",
    version: (
        "software show",
        "+------------------------------------------------------------------------------+\n| Installed Package   : saos-06-20-00-0215                                      |\n+------------------------------------------------------------------------------+",
    ),
    long_command: "system show tech",
    show_config: "configuration show",
    exec_words: &["port", "vlan"],
    save: saves("configuration save", ""),
    sample_config: &["port set port 1 description netpulse-test"],
    sample_shows: "port set port 1 description netpulse-test",
    ..FLAT
};
