//! Devices with an IOS-like CLI (a `>` and a `#` prompt, `(config)` modes) as each vendor's
//! box prints it. `models_more` holds the others; [`ALL`] lists both.

use crate::model::{Commit, ConfigModel, Model, Prompts, SaveModel, saves};

const CISCO_MORE: &str = " --More-- ";
const CISCO_ERASE: &str =
    "\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08          \x08\x08\x08\x08\x08\x08\x08\x08\x08\x08";
const SECTIONS: &[(&str, &str)] = &[
    ("interface", "config-if"),
    ("router", "config-router"),
    ("vlan", "config-vlan"),
    ("line", "config-line"),
];
const WORDS: &[&str] = &[
    "hostname",
    "description",
    "ip",
    "ntp",
    "logging",
    "snmp-server",
    "shutdown",
    "no",
    "switchport",
    "name",
];
const IOS_CONFIG: ConfigModel = ConfigModel {
    enter: "configure terminal",
    enter_text: "Enter configuration commands, one per line.  End with CNTL/Z.",
    enter_question: None,
    exit: "end",
    exit_text: "",
    sections: SECTIONS,
    words: WORDS,
    commit: None,
};
const CISCO_PROMPTS: Prompts = Prompts {
    user: "{h}>",
    enable: "{h}#",
    config: "{h}(config)#",
    section: "{h}({s})#",
};

/// What most of these devices share; each model below says how it differs.
const IOS_LIKE: Model = Model {
    device_type: "",
    banner: "\nUnauthorized access is prohibited.\n",
    login_question: None,
    prompts: CISCO_PROMPTS,
    unsaved_marker: "",
    candidate_marks: ("", ""),
    enable: Some("enable"),
    paging_off: &["terminal length 0"],
    paging_reply: "",
    accepted: &["terminal width *"],
    more: CISCO_MORE,
    more_erase: CISCO_ERASE,
    error: "% Invalid input detected at '^' marker.",
    caret: true,
    version: ("show version", "{h} uptime is 3 weeks"),
    long_command: "show tech-support",
    show_config: "show running-config",
    config: Some(IOS_CONFIG),
    exec_words: &[],
    exec_blocks: (&[], &[]),
    save: saves("write memory", "Building configuration...\n[OK]"),
    sample_config: &["interface Vlan10", "description netpulse-test"],
    sample_shows: " description netpulse-test",
};

pub(crate) static CISCO_ASA: Model = Model {
    device_type: "cisco_asa",
    banner: "Type help or '?' for a list of available commands.\n",
    paging_off: &["terminal pager 0"],
    error: "ERROR: % Invalid input detected at '^' marker.",
    version: (
        "show version",
        "Cisco Adaptive Security Appliance Software Version 9.16(4)\n{h} up 21 days 3 hours",
    ),
    config: Some(ConfigModel {
        enter_text: "",
        enter_question: Some(
            "***************************** NOTICE *****************************\n\nHelp to improve the ASA platform by enabling anonymous reporting,\nwhich allows Cisco to securely receive minimal error and health\ninformation from the device.\n\nWould you like to enable anonymous error reporting to help improve\nthe product? [Y]es, [N]o, [A]sk later: ",
        ),
        ..IOS_CONFIG
    }),
    save: saves(
        "write memory",
        "Building configuration...\nCryptochecksum: 8c2ed1f3 1c6a42bb 77f8e0a2 4a1f00d4\n[OK]",
    ),
    sample_config: &["interface Management0/0", "description netpulse-test"],
    ..IOS_LIKE
};

pub(crate) static CISCO_XR: Model = Model {
    device_type: "cisco_xr",
    prompts: Prompts {
        user: "RP/0/RP0/CPU0:{h}#",
        enable: "RP/0/RP0/CPU0:{h}#",
        config: "RP/0/RP0/CPU0:{h}(config)#",
        section: "RP/0/RP0/CPU0:{h}({s})#",
    },
    enable: None,
    version: (
        "show version",
        "Cisco IOS XR Software, Version 7.9.2\nCopyright (c) 2013-2023 by Cisco Systems, Inc.\n{h} uptime is 3 weeks",
    ),
    config: Some(ConfigModel {
        enter: "configure terminal",
        enter_text: "",
        commit: Some(Commit {
            command: "commit",
            compare: "show commit changes diff",
            text: "",
            abort: "abort",
            abort_text: "",
            commit_leaves: false,
            abort_leaves: true,
            persists: true,
        }),
        ..IOS_CONFIG
    }),
    save: None,
    sample_config: &["interface Loopback10", "description netpulse-test"],
    ..IOS_LIKE
};

pub(crate) static CISCO_S300: Model = Model {
    device_type: "cisco_s300",
    enable: None,
    paging_off: &["terminal datadump"],
    error: "% Unrecognized command",
    caret: false,
    version: (
        "show version",
        "SW version    2.5.9.54 ( date  22-Dec-2020 time  11:34:59 )\nBoot version  1.3.5.06 ( date  21-Jul-2013 time  15:12:10 )\nHW version    V02",
    ),
    save: Some(SaveModel {
        command: "write memory",
        questions: &[("Overwrite file [startup-config].... (Y/N)[N] ?", "y")],
        text: "Copy succeeded",
        in_config: false,
    }),
    ..IOS_LIKE
};

const DELL_CONFIG: ConfigModel = ConfigModel {
    enter: "configure",
    enter_text: "",
    sections: &[("interface", "conf-if")],
    ..IOS_CONFIG
};

pub(crate) static DELL_FORCE10: Model = Model {
    device_type: "dell_force10",
    prompts: Prompts {
        config: "{h}(conf)#",
        ..CISCO_PROMPTS
    },
    error: "% Error: Invalid input at \"^\" marker.",
    version: (
        "show version",
        "Dell Real Time Operating System Software\nDell Operating System Version: 2.0\n{h} uptime is 3 week(s)",
    ),
    config: Some(DELL_CONFIG),
    save: saves("write memory", "!\n5177 bytes successfully copied"),
    sample_config: &["interface Vlan 10", "description netpulse-test"],
    ..IOS_LIKE
};

pub(crate) static DELL_OS10: Model = Model {
    device_type: "dell_os10",
    prompts: Prompts {
        config: "{h}(config)# ",
        section: "{h}({s})# ",
        enable: "{h}# ",
        user: "{h}> ",
    },
    enable: None,
    error: "% Error: Unrecognized command.",
    caret: false,
    version: (
        "show version",
        "Dell EMC Networking OS10 Enterprise\nOS Version: 10.5.4.0\nUp Time: 3 weeks",
    ),
    config: Some(ConfigModel {
        sections: &[("interface", "conf-if-vl-10")],
        ..IOS_CONFIG
    }),
    save: saves("copy running-configuration startup-configuration", ""),
    sample_config: &["interface vlan10", "description netpulse-test"],
    ..IOS_LIKE
};

pub(crate) static DELL_POWERCONNECT: Model = Model {
    device_type: "dell_powerconnect",
    version: (
        "show system",
        "System Description: Dell Ethernet Switch\nSystem Up Time (days,hour:min:sec): 21,03:12:44\nSystem Name: {h}\nMachine Type: PowerConnect 6248P",
    ),
    paging_off: &["terminal datadump", "terminal length 0"],
    config: Some(ConfigModel {
        enter: "configure",
        enter_text: "",
        ..IOS_CONFIG
    }),
    save: Some(SaveModel {
        command: "copy running-config startup-config",
        questions: &[(
            "This operation may take a few minutes.\nManagement interfaces will not be available during this time.\n\nAre you sure you want to save? (y/n) ",
            "y",
        )],
        text: "Configuration Saved!",
        in_config: false,
    }),
    ..IOS_LIKE
};

pub(crate) static ARUBA_AOSCX: Model = Model {
    device_type: "aruba_aoscx",
    enable: None,
    paging_off: &["no page"],
    error: "Invalid input: {cmd}",
    caret: false,
    version: (
        "show version",
        "-----------------------------------------------------------------------------\nArubaOS-CX\n(c) Copyright 2017-2023 Hewlett Packard Enterprise Development LP\n-----------------------------------------------------------------------------\nVersion      : FL.10.11.1010",
    ),
    save: saves(
        "write memory",
        "Configuration changes will take time to process, please be patient.",
    ),
    sample_config: &["interface 1/1/1", "description netpulse-test"],
    ..IOS_LIKE
};

pub(crate) static ARUBA_OS: Model = Model {
    device_type: "aruba_os",
    prompts: Prompts {
        user: "({h}) >",
        enable: "({h}) #",
        config: "({h}) (config) #",
        section: "({h}) ({s}) #",
    },
    paging_off: &["no paging"],
    error: "% Parse error",
    version: (
        "show version",
        "Aruba Operating System Software.\nArubaOS (MODEL: Aruba7010), Version 8.10.0.7\nWebsite: http://www.arubanetworks.com\n(c) Copyright 2023 Hewlett Packard Enterprise Development LP.",
    ),
    caret: true,
    config: Some(ConfigModel {
        enter: "configure terminal",
        enter_text: "Enter Configuration commands, one per line. End with CNTL/Z",
        ..IOS_CONFIG
    }),
    save: saves(
        "write memory",
        "Saving Configuration...\n\nConfiguration Saved.",
    ),
    ..IOS_LIKE
};

pub(crate) const HP_PROCURVE: Model = Model {
    device_type: "hp_procurve",
    banner: "\nHP J8697A Switch 5406zl\nSoftware revision K.15.18.0013\n\n(C) Copyright 2015 Hewlett-Packard Development Company, L.P.\n\n",
    login_question: Some("Press any key to continue"),
    paging_off: &["no page"],
    error: "Invalid input: {cmd}",
    caret: false,
    version: (
        "show version",
        "Image stamp:    /ws/swbuildm/K_15_18_0013/code/build/btm(swbuildm_K_15_18_0013)\n                Nov 28 2015 10:49:32\n                K.15.18.0013\n                1838\nBoot Image:     Primary",
    ),
    config: Some(ConfigModel {
        enter_text: "",
        sections: &[("vlan", "vlan-10"), ("interface", "eth-1")],
        ..IOS_CONFIG
    }),
    save: saves("write memory", ""),
    sample_config: &["vlan 10", "name netpulse-test"],
    sample_shows: " name netpulse-test",
    ..IOS_LIKE
};

pub(crate) static ARUBA_OSSWITCH: Model = Model {
    device_type: "aruba_osswitch",
    banner: "\nAruba JL256A 2930F-48G-PoE+-4SFP+ Switch\nSoftware revision WC.16.11.0012\n\n",
    // Release 16 renamed the line ArubaOS-Switch; `show version` looks as it did.
    version: (
        "show version",
        "Image stamp:    /ws/swbuildm/rel_orlando_qaoff/code/build/anm(swbuildm_rel_orlando_qaoff_rel_orlando)\n                WC.16.11.0012\n                143\nBoot Image:     Primary",
    ),
    ..HP_PROCURVE
};

const FASTIRON_PROMPTS: Prompts = Prompts {
    user: "SSH@{h}>",
    enable: "SSH@{h}#",
    config: "SSH@{h}(config)#",
    section: "SSH@{h}({s})#",
};

pub(crate) const RUCKUS_FASTIRON: Model = Model {
    device_type: "ruckus_fastiron",
    prompts: FASTIRON_PROMPTS,
    paging_off: &["skip-page-display"],
    paging_reply: "Disable page display mode",
    error: "Invalid input -> {cmd}\nType ? for a list",
    caret: false,
    version: (
        "show version",
        "  Copyright (c) Ruckus Networks, Inc. All rights reserved.\n    UNIT 1: compiled on Mar 3 2023 at 04:10:53 labeled as SPR08095k",
    ),
    config: Some(ConfigModel {
        enter_text: "",
        sections: &[
            ("interface", "config-if-e1000-1/1/1"),
            ("vlan", "config-vlan-10"),
        ],
        words: &[
            "port-name",
            "enable",
            "disable",
            "hostname",
            "ip",
            "no",
            "untagged",
            "tagged",
        ],
        ..IOS_CONFIG
    }),
    save: saves("write memory", "Write startup-config done."),
    sample_config: &["interface ethernet 1/1/1", "port-name netpulse-test"],
    sample_shows: " port-name netpulse-test",
    ..IOS_LIKE
};

pub(crate) static BROCADE_FASTIRON: Model = Model {
    device_type: "brocade_fastiron",
    version: (
        "show version",
        "  Copyright (c) 1996-2016 Brocade Communications Systems, Inc. All rights reserved.\n    UNIT 1: compiled on Aug 3 2016 labeled as SPR08030i",
    ),
    ..RUCKUS_FASTIRON
};

pub(crate) const BROCADE_NETIRON: Model = Model {
    device_type: "brocade_netiron",
    paging_off: &["terminal length 0"],
    paging_reply: "",
    version: (
        "show version",
        "System Mode: MLX\nChassis: NetIron 4-slot (Serial #: BEK0123456)\nIronWare : Version 5.8.0fT163 Copyright (c) 1996-2015 Brocade Communications Systems, Inc.",
    ),
    ..RUCKUS_FASTIRON
};

pub(crate) static EXTREME_NETIRON: Model = Model {
    device_type: "extreme_netiron",
    version: (
        "show version",
        "System Mode: MLX\nChassis: NetIron 4-slot (Serial #: BEK0123456)\nIronWare : Version 6.2.00aT163 Copyright (c) 2017 Extreme Networks, Inc.",
    ),
    ..BROCADE_NETIRON
};

pub(crate) static EXTREME_VSP: Model = Model {
    device_type: "extreme_vsp",
    prompts: Prompts {
        user: "{h}:1>",
        enable: "{h}:1#",
        config: "{h}:1(config)#",
        section: "{h}:1({s})#",
    },
    paging_off: &["terminal more disable"],
    version: (
        "show sys-info",
        "General Info :\n\n        SysDescr     : VSP-4450GSX-PWR+ (8.1.0.0)\n        SysName      : {h}",
    ),
    save: saves(
        "save config",
        "Save config to file /intflash/config.cfg successful.",
    ),
    sample_config: &["interface GigabitEthernet 1/1", "name netpulse-test"],
    sample_shows: " name netpulse-test",
    ..IOS_LIKE
};

pub(crate) static ALLIED_TELESIS_AWPLUS: Model = Model {
    device_type: "allied_telesis_awplus",
    version: (
        "show version",
        "AlliedWare Plus (TM) 5.5.2 03/30/23 10:36:28\n\nBuild name : x230-5.5.2-3.1.rel",
    ),
    save: saves(
        "copy running-config startup-config",
        "Building configuration...\n[OK]",
    ),
    sample_config: &["interface port1.0.1", "description netpulse-test"],
    ..IOS_LIKE
};

pub(crate) static RUIJIE_OS: Model = Model {
    device_type: "ruijie_os",
    error: "% Unknown command.",
    version: (
        "show version",
        "System description      : Ruijie Full 10G Routing Switch(S6000C-48GT4XS-E) By Ruijie Networks\nSystem software version : S6000C_RGOS 11.4(1)B12P15",
    ),
    save: saves("write", "Building configuration...\n[OK]"),
    ..IOS_LIKE
};

pub(crate) static ZTE_ZXROS: Model = Model {
    device_type: "zte_zxros",
    error: "%Error 20200: Invalid input detected at '^' marker.",
    version: (
        "show version",
        "ZTE ZXR10 Software, Version: ZXR10 M6000-S V3.00.10(3.60.1)\nCopyright (c) 2000-2023 by ZTE Corporation",
    ),
    save: saves("write", "Building configuration...\n..[OK]"),
    sample_config: &["interface gei-0/1/1/1", "description netpulse-test"],
    ..IOS_LIKE
};

pub(crate) static MELLANOX_MLNXOS: Model = Model {
    device_type: "mellanox_mlnxos",
    prompts: Prompts {
        user: "{h} [standalone: master] > ",
        enable: "{h} [standalone: master] # ",
        config: "{h} [standalone: master] (config) # ",
        section: "{h} [standalone: master] ({s}) # ",
    },
    paging_off: &["no cli session paging enable", "terminal length 999"],
    error: "% Unrecognized command \"{cmd}\".\nType \"?\" for help.",
    caret: false,
    version: (
        "show version",
        "Product name:      Onyx\nProduct release:   3.10.2002\nUptime:            21d 3h",
    ),
    config: Some(ConfigModel {
        enter_text: "",
        exit: "exit",
        sections: &[("interface", "config interface ethernet 1/1")],
        ..IOS_CONFIG
    }),
    save: saves("configuration write", ""),
    sample_config: &["interface ethernet 1/1", "description netpulse-test"],
    ..IOS_LIKE
};

pub(crate) static IPINFUSION_OCNOS: Model = Model {
    device_type: "ipinfusion_ocnos",
    version: (
        "show version",
        "Software Product: OcNOS, Release 6.4.1.62\nHostname: {h}",
    ),
    config: Some(ConfigModel {
        enter_text: "Enter configuration commands, one per line.  End with CNTL/Z.",
        commit: Some(Commit {
            command: "commit",
            compare: "",
            text: "",
            abort: "abort",
            abort_text: "",
            commit_leaves: false,
            abort_leaves: false,
            persists: false,
        }),
        ..IOS_CONFIG
    }),
    sample_config: &["interface xe1", "description netpulse-test"],
    ..IOS_LIKE
};

pub(crate) static UBIQUITI_EDGESWITCH: Model = Model {
    device_type: "ubiquiti_edgeswitch",
    version: (
        "show version",
        "Switch: 1\n\nSystem Description............................. EdgeSwitch 24-Port 250W, 1.9.3.5283784, Linux 3.6.5-f4a26ed5\nMachine Type................................... EdgeSwitch 24-Port 250W",
    ),
    banner: "\nWelcome to EdgeSwitch\n\nBy logging in, accessing, or using the Ubiquiti product, you\nacknowledge that you have read and understood the Ubiquiti\nLicense Agreement (available in the Web UI at, by default,\nhttp://192.168.1.2) and agree to be bound by its terms.\n\n",
    prompts: Prompts {
        user: "({h}) >",
        enable: "({h}) #",
        config: "({h}) (Config)#",
        section: "({h}) ({s})#",
    },
    config: Some(ConfigModel {
        enter: "configure",
        enter_text: "",
        exit: "exit",
        sections: &[("interface", "Interface 0/1")],
        ..IOS_CONFIG
    }),
    save: Some(SaveModel {
        command: "write memory",
        questions: &[(
            "This operation may take a few minutes.\nManagement interfaces will not be available during this time.\n\nAre you sure you want to save? (y/n) ",
            "y",
        )],
        text: "Config file 'startup-config' created successfully .\n\nConfiguration Saved!",
        in_config: false,
    }),
    sample_config: &["interface 0/1", "description netpulse-test"],
    ..IOS_LIKE
};

pub(crate) static A10: Model = Model {
    device_type: "a10",
    banner: "ACOS system is ready now.\n\n[type ? for help]\n\n",
    error: "Unrecognized command.",
    caret: false,
    version: (
        "show version",
        "Thunder Series Unified Application Service Gateway TH1030S\n  Copyright 2007-2023 by A10 Networks, Inc.\n          64-bit Advanced Core OS (ACOS) version 5.2.1-p8",
    ),
    sample_config: &["interface ethernet 1", "name netpulse-test"],
    sample_shows: " name netpulse-test",
    ..IOS_LIKE
};

/// Every model, the ones in `models_more` included.
pub(crate) static ALL: &[&Model] = &[
    &CISCO_ASA,
    &CISCO_XR,
    &CISCO_S300,
    &DELL_FORCE10,
    &DELL_OS10,
    &DELL_POWERCONNECT,
    &ARUBA_AOSCX,
    &ARUBA_OS,
    &HP_PROCURVE,
    &ARUBA_OSSWITCH,
    &RUCKUS_FASTIRON,
    &BROCADE_FASTIRON,
    &BROCADE_NETIRON,
    &EXTREME_NETIRON,
    &EXTREME_VSP,
    &ALLIED_TELESIS_AWPLUS,
    &RUIJIE_OS,
    &ZTE_ZXROS,
    &MELLANOX_MLNXOS,
    &IPINFUSION_OCNOS,
    &UBIQUITI_EDGESWITCH,
    &A10,
    &crate::models_more::EXTREME_EXOS,
    &crate::models_more::ALCATEL_AOS,
    &crate::models_more::PALOALTO_PANOS,
    &crate::models_more::VYOS,
    &crate::models_more::UBIQUITI_EDGEROUTER,
    &crate::models_more::HUAWEI_VRPV8,
    &crate::models_more::HP_COMWARE,
    &crate::models_more::NOKIA_SROS,
    &crate::models_more::NOKIA_SRL,
    &crate::models_more::MIKROTIK_ROUTEROS,
    &crate::models_more::FORTINET,
    &crate::models_more::CHECKPOINT_GAIA,
    &crate::models_more::CIENA_SAOS,
];
