//! What the XDP program costs per packet: BPF_PROG_TEST_RUN with `repeat`
//! (the kernel times the runs and reports the mean), for a valid advert, an
//! invalid one and packets that are not VRRP. Run by `cargo xtask bench`.
use std::net::Ipv4Addr;

use ha_common::{FAMILY_V4, InstanceConf, InstanceKey};
use ha_daemon::ebpf::loader::XdpProgram;
use ha_testbed::frames::*;

const REPEAT: u32 = 1_000_000;

fn main() -> anyhow::Result<()> {
    let json = std::env::args().any(|a| a == "--json");
    let mut p = XdpProgram::load()?;
    p.maps.configure(&[(
        InstanceKey {
            ifindex: 1,
            vrid: 51,
            family: FAMILY_V4,
            _pad: [0; 2],
        },
        InstanceConf {
            version: 3,
            ..Default::default()
        },
    )])?;
    p.maps.watch_endpoint("198.18.0.2".parse()?, 6379)?;
    let src = Ipv4Addr::new(198, 18, 0, 2);
    let vip = Ipv4Addr::new(198, 18, 0, 100);
    let valid = advert_v3_frame(src, 51, 150, 1, &[vip], None);
    let mut bad = valid.clone();
    bad[40] ^= 0xff; // checksum byte
    let me = Ipv4Addr::new(198, 18, 0, 1);
    let cases = [
        (
            "valid VRRPv3 advert (validated, checksummed, recorded)",
            valid,
        ),
        ("invalid advert (bad checksum, dropped)", bad),
        (
            "TCP segment from a watched Redis",
            tcp_frame(src, 6379, me, 40000, 0x10),
        ),
        (
            "TCP segment, not watched",
            tcp_frame(src, 6380, me, 40000, 0x10),
        ),
        (
            "UDP datagram (not VRRP)",
            ethernet(
                [2, 0, 0, 0, 0, 2],
                SRC_MAC,
                0x0800,
                None,
                &ipv4(src, me, 17, 64, &[0u8; 64]),
            ),
        ),
    ];
    let mut rows = Vec::new();
    for (name, frame) in &cases {
        // Warm up, then take the best of 3 runs of REPEAT.
        p.test_run(frame, 10_000)?;
        let ns = (0..3)
            .map(|_| p.test_run(frame, REPEAT).map(|r| r.duration.as_nanos()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .min()
            .unwrap_or(0);
        rows.push((*name, ns));
    }
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, ns)| serde_json::json!({"case": n, "ns_per_packet": ns}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "XDP program cost per packet (BPF_PROG_TEST_RUN, mean of {REPEAT} runs, best of 3):"
        );
        for (n, ns) in rows {
            println!("  {ns:>5} ns  {n}");
        }
    }
    Ok(())
}
