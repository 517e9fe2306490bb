//! The fault campaign, short and seeded, as `cargo xtask chaos --minutes 1
//! --seed 7` runs it (and the same with three Redis hosts): no acknowledged
//! write lost beyond the README's bound, never two Redis acknowledging at
//! once. A seed that once failed stays here, with what it found.
use ha_testbed::{Switch, chaos};

fn campaign(seed: u64, hosts: usize, switch: Switch) {
    let v = chaos::run(&chaos::Options {
        minutes: 1.0,
        seed,
        hosts,
        switch,
        plant: None,
        verbose: true,
    })
    .expect("the campaign runs");
    print!("{}", v.render());
    assert!(
        v.acknowledged > 10_000,
        "the clients wrote: {}",
        v.acknowledged
    );
    assert!(v.ok, "seed {seed}: {}", v.render());
}

#[test]
fn seed_7_two_redis_hosts_and_a_witness() {
    campaign(7, 2, Switch::Nic);
}

#[test]
fn seed_8_three_redis_hosts_on_a_plain_bridge() {
    campaign(8, 3, Switch::Veth);
}
