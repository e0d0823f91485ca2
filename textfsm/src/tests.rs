//! The engine's semantics, each on a small template of our own.

use crate::{Cell, Index, Item, Template, parse_joined};

fn rows(template: &str, text: &str) -> Vec<Vec<String>> {
    let t = Template::new(template).unwrap();
    t.parse(text)
        .unwrap()
        .rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|c| match c {
                    Cell::Text(s) => s,
                    Cell::List(l) => format!("{l:?}"),
                })
                .collect()
        })
        .collect()
}

fn error(template: &str) -> String {
    Template::new(template).unwrap_err().to_string()
}

const INTERFACES: &str = "\
Value Filldown CHASSIS (\\S+)
Value Required NAME (\\S+)
Value STATUS (up|down)
Value List ADDRESS (\\d+\\.\\d+\\.\\d+\\.\\d+)

Start
  ^Chassis ${CHASSIS}
  ^${NAME} is ${STATUS} -> Continue
  ^\\S+ is -> Interface

Interface
  ^\\s+address ${ADDRESS}
  ^\\S+ is -> Continue.Record
  ^${NAME} is ${STATUS}
  ^end -> End
";

#[test]
fn filldown_required_list_continue_record_and_end() {
    let text = "Chassis c1\nGi1 is up\n  address 10.0.0.1\n  address 10.0.0.2\nGi2 is down\nend\nGi3 is up\n";
    let gi1 = ["c1", "Gi1", "up", r#"[Text("10.0.0.1"), Text("10.0.0.2")]"#];
    // End stops the input, and what is pending (Gi2) is not recorded.
    assert_eq!(rows(INTERFACES, text), [gi1]);
    // Without it, the implicit EOF records Gi2; the chassis was filled down.
    let text = text.replace("end\n", "");
    assert_eq!(
        rows(INTERFACES, &text),
        [gi1, ["c1", "Gi2", "down", "[]"], ["c1", "Gi3", "up", "[]"]]
    );
}

#[test]
fn the_implicit_eof_records_what_is_pending_unless_an_eof_state_is_declared() {
    let t = "Value A (\\d+)\n\nStart\n  ^a=${A}\n";
    assert_eq!(rows(t, "a=1\nx\n"), [["1"]]);
    let t = "Value A (\\d+)\n\nStart\n  ^a=${A}\n\nEOF\n";
    assert!(rows(t, "a=1\n").is_empty());
    // Nothing set: no record.
    assert!(rows("Value A (\\d+)\n\nStart\n  ^a=${A}\n", "b\n").is_empty());
}

#[test]
fn fillup_clear_and_clearall() {
    let t = "Value Fillup OWNER (\\w+)\nValue ITEM (\\w+)\n\nStart\n  ^item ${ITEM} -> Record\n  ^owner ${OWNER}\n";
    assert_eq!(
        rows(t, "item a\nitem b\nowner bob\n"),
        [["bob", "a"], ["bob", "b"], ["bob", ""]],
        "owner fills the rows above that lack one, and is itself recorded at EOF"
    );
    let t = "Value Filldown A (\\w+)\nValue B (\\w+)\n\nStart\n  ^a ${A}\n  ^b ${B} -> Record\n  ^reset -> Clearall\n  ^drop -> Clear\n";
    assert_eq!(
        rows(t, "a x\nb 1\nb 2\nreset\nb 3\n"),
        [["x", "1"], ["x", "2"], ["", "3"]]
    );
}

#[test]
fn a_list_keeps_the_references_none_and_nested_groups_become_items() {
    let t = "Value List V (\\d+)\nValue K (k)\n\nStart\n  ^${K}(=${V})? -> Record\n";
    let table = Template::new(t).unwrap().parse("k=1\nk\n").unwrap();
    assert_eq!(
        table.rows[1][0],
        Cell::List(vec![Item::Text("None".into())])
    );
    let t = "Value List PEER ((?P<ip>\\S+) as (?P<asn>\\d+))\n\nStart\n  ^peer ${PEER}\n";
    let table = Template::new(t)
        .unwrap()
        .parse("peer 10.0.0.1 as 65001\n")
        .unwrap();
    assert_eq!(
        table.to_json(),
        serde_json::json!([{"peer": [{"ip": "10.0.0.1", "asn": "65001"}]}])
    );
}

#[test]
fn the_error_action_fails_the_parse_with_its_message() {
    let t = "Value A (\\d+)\n\nStart\n  ^a=${A}\n  ^.+ -> Error \"unexpected line\"\n";
    let e = Template::new(t).unwrap().parse("a=1\nboom\n").unwrap_err();
    assert_eq!(
        (e.message.as_str(), e.input_line, e.input.as_str()),
        ("unexpected line", 2, "boom")
    );
}

#[test]
fn templates_are_checked_as_the_reference_checks_them() {
    for (t, why) in [
        ("Value A (\\d+\n\nStart\n", "\"()\" pair"),
        ("Value A \\d+\n\nStart\n", "unknown option \"A\""),
        ("Value Bogus A (\\d+)\n\nStart\n", "unknown option"),
        (
            "Value A (\\d+)\nValue A (\\w+)\n\nStart\n",
            "declared twice",
        ),
        ("Value A (\\d+)\n\nState1\n  ^x\n", "no Start state"),
        ("Value A (\\d+)\n\nStart\n  ^${B}\n", "unknown value"),
        ("Value A (\\d+)\n\nStart\n  ^x$\n", "use ${Name}"),
        (
            "Value A (\\d+)\n\nStart\n  ^x -> Continue Other\n",
            "Continue cannot change state",
        ),
        (
            "Value A (\\d+)\n\nStart\n  ^x -> Nowhere\n",
            "is not declared",
        ),
        ("Value A (\\d+)\n\nStart\n^x\n", "one or two spaces"),
        (
            "Value A (\\d+)\n\nStart\n\nEOF\n  ^x\n",
            "must have no rules",
        ),
        (
            "Value A (\\d+)\n\nStart\n  ^x -> Next.Bogus\n",
            "badly formatted",
        ),
    ] {
        let e = error(t);
        assert!(e.contains(why), "{t:?}: {e}");
    }
}

#[test]
fn python_patterns_mean_the_same_here() {
    // `\<` is a literal bracket in Python; `{` without a count is literal; `$$` is `$`.
    let t = "Value A (\\S+)\n\nStart\n  ^\\<${A}\\> {x}$$\n";
    assert_eq!(rows(t, "<r1> {x}\n"), [["r1"]]);
    // A class holding `[` and a repeated lookbehind (which only Python accepts as written).
    let t = "Value A ([[\\]a-z]+)\n\nStart\n  ^${A}(?<=[a-z])+ end\n";
    assert_eq!(rows(t, "[ab] x end\n"), Vec::<Vec<String>>::new());
    assert_eq!(rows(t, "ab end\n"), [["ab"]]);
    // Lookahead needs the fallback engine.
    let t = "Value A (\\S+(?=:))\n\nStart\n  ^${A}\n";
    assert_eq!(rows(t, "port1: up\n"), [["port1"]]);
}

#[test]
fn lines_end_as_python_splits_them() {
    let t = "Value A (\\w+)\n\nStart\n  ^${A} -> Record\n";
    assert_eq!(rows(t, "a\r\nb\rc\nd"), [["a"], ["b"], ["c"], ["d"]]);
}

#[test]
fn an_index_finds_templates_by_abbreviated_command_and_joins_them_on_keys() {
    let index = Index::new(
        "# comment\nTemplate, Hostname, Platform, Command\n\nacme_mods.textfsm:acme_mods_serial.textfsm, .*, acme_os, sh[[ow]] mod[[ules]]\nacme_ver.textfsm, .*, acme_os, sh[[ow]] ver[[sion]]\n",
    )
    .unwrap();
    assert_eq!(
        index.find("acme_os", "sh mod").unwrap(),
        ["acme_mods.textfsm", "acme_mods_serial.textfsm"]
    );
    assert!(index.find("acme_os", "show version").is_some());
    assert!(index.find("acme_os", "shw version").is_none());
    assert!(index.find("other_os", "show version").is_none());
    let mods = Template::new(
        "Value Key SLOT (\\d+)\nValue MODEL (\\S+)\n\nStart\n  ^${SLOT} ${MODEL}$$ -> Record\n",
    )
    .unwrap();
    let serials = Template::new("Value Key SLOT (\\d+)\nValue SERIAL (\\S+)\n\nStart\n  ^${SLOT} serial ${SERIAL} -> Record\n").unwrap();
    let table = parse_joined(
        &[&mods, &serials],
        "1 X100\n2 X200\n2 serial S2\n1 serial S1\n",
    )
    .unwrap();
    assert_eq!(
        table.to_json(),
        serde_json::json!([
            {"slot": "1", "model": "X100", "serial": "S1"},
            {"slot": "2", "model": "X200", "serial": "S2"},
        ])
    );
}

mod properties {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any text as a template, and any input to a good one: an answer, never a panic.
        #[test]
        fn any_template_text_compiles_or_fails_with_a_line(text in "[ -~\n]{0,200}") {
            let _ = crate::Template::new(&text);
        }

        #[test]
        fn any_input_parses(input in "[ -~\n\r]{0,400}") {
            let t = crate::Template::new(super::INTERFACES).unwrap();
            let _ = t.parse(&input);
        }
    }
}
