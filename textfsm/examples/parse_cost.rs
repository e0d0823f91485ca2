//! What parsing costs per typical output: IOS `show interfaces` of a 48-port switch, through
//! ntc-templates' template for it (from the installed directory). Prints the template's
//! compile time and the parse time, median and p99.
//!
//! cargo run --release -p netpulse-textfsm --example parse_cost -- [NTC_TEMPLATES_DIR]

use std::time::{Duration, Instant};

use netpulse_textfsm::{Index, Template, parse_joined};

/// The output as IOS prints it for 48 access ports.
fn show_interfaces(ports: usize) -> String {
    let mut s = String::new();
    for p in 1..=ports {
        s.push_str(&format!(
            "GigabitEthernet1/0/{p} is up, line protocol is up (connected)
  Hardware is Gigabit Ethernet, address is 0011.2233.44{p:02x} (bia 0011.2233.44{p:02x})
  Description: access-port-{p}
  MTU 1500 bytes, BW 1000000 Kbit/sec, DLY 10 usec,
     reliability 255/255, txload 1/255, rxload 1/255
  Encapsulation ARPA, loopback not set
  Keepalive set (10 sec)
  Full-duplex, 1000Mb/s, media type is 10/100/1000BaseTX
  input flow-control is off, output flow-control is unsupported
  ARP type: ARPA, ARP Timeout 04:00:00
  Last input never, output 00:00:01, output hang never
  Last clearing of \"show interface\" counters never
  Input queue: 0/75/0/0 (size/max/drops/flushes); Total output drops: 0
  Queueing strategy: fifo
  Output queue: 0/40 (size/max)
  5 minute input rate 1000 bits/sec, 1 packets/sec
  5 minute output rate 2000 bits/sec, 2 packets/sec
     123456 packets input, 98765432 bytes, 0 no buffer
     Received 1234 broadcasts (567 multicasts)
     0 runts, 0 giants, 0 throttles
     0 input errors, 0 CRC, 0 frame, 0 overrun, 0 ignored
     0 watchdog, 567 multicast, 0 pause input
     0 input packets with dribble condition detected
     234567 packets output, 123456789 bytes, 0 underruns
     0 output errors, 0 collisions, 1 interface resets
     0 unknown protocol drops
     0 babbles, 0 late collision, 0 deferred
     0 lost carrier, 0 no carrier, 0 pause output
     0 output buffer failures, 0 output buffers swapped out
"
        ));
    }
    s
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 99 / 100).min(v.len() - 1)]),
    )
}

fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| netpulse_textfsm::NTC_TEMPLATES_DIR.into());
    let dir = std::path::Path::new(&dir);
    let index = Index::new(&std::fs::read_to_string(dir.join("index")).expect("the index"))
        .expect("a valid index");
    let names = index
        .find("cisco_ios", "show interfaces")
        .expect("a template for show interfaces");
    let texts: Vec<String> = names
        .iter()
        .map(|n| std::fs::read_to_string(dir.join(n)).expect("the template"))
        .collect();
    let compile: Vec<Duration> = (0..20)
        .map(|_| {
            let start = Instant::now();
            for t in &texts {
                std::hint::black_box(Template::new(t).expect("compiles"));
            }
            start.elapsed()
        })
        .collect();
    let templates: Vec<Template> = texts.iter().map(|t| Template::new(t).unwrap()).collect();
    let refs: Vec<&Template> = templates.iter().collect();
    let output = show_interfaces(48);
    let rows = parse_joined(&refs, &output).expect("parses").rows.len();
    assert_eq!(rows, 48, "one row per port");
    let parse: Vec<Duration> = (0..300)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(parse_joined(&refs, &output).unwrap());
            start.elapsed()
        })
        .collect();
    let (c50, c99) = stats(compile);
    let (p50, p99) = stats(parse);
    println!(
        "show interfaces, 48 ports ({} lines, {} KiB) with {}: {rows} rows",
        output.lines().count(),
        output.len() / 1024,
        names.join(":")
    );
    println!("template compile: median {c50:.2} ms, p99 {c99:.2} ms (once per worker process)");
    println!("parse:            median {p50:.3} ms, p99 {p99:.3} ms (n=300)");
}
