//! Every template of the installed ntc-templates (scripts/deps puts it where the agent looks by
//! default) compiles with this engine, and its index reads: the library a fleet parses with.

use std::path::Path;

use netpulse_textfsm::NTC_TEMPLATES_DIR as DIR;

#[test]
fn every_installed_ntc_template_compiles_and_the_index_reads() {
    let dir = Path::new(DIR);
    let index = std::fs::read_to_string(dir.join("index"))
        .unwrap_or_else(|e| panic!("{DIR}/index: {e}; scripts/deps installs ntc-templates"));
    let index = netpulse_textfsm::Index::new(&index).expect("the index reads");
    let mut failed = Vec::new();
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|x| x != "textfsm") {
            continue;
        }
        n += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = netpulse_textfsm::Template::new(&text) {
            failed.push(format!("{}: {e}", path.display()));
        }
    }
    println!("{} of {n} installed templates compile", n - failed.len());
    assert!(n > 900, "only {n} templates in {DIR}");
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    for (platform, command) in [
        ("cisco_ios", "show version"),
        ("cisco_nxos", "show interface"),
        ("juniper_junos", "show interfaces"),
        ("arista_eos", "show ip route"),
        ("huawei_vrp", "display version"),
    ] {
        assert!(
            index.find(platform, command).is_some(),
            "{platform} {command:?}"
        );
    }
    assert!(index.has_platform("hp_procurve") && !index.has_platform("acme_os"));
}
