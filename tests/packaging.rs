//! The shipped unit reads RHEL's /etc/sysconfig/saslauthd and passes
//! `-m $SOCKETDIR -a $MECH $FLAGS`, which our saslauthd accepts.

use mumail::config::sasl::Sysconfig;
use mumail::daemon::saslauthd::options::{parse, Action};
use std::path::Path;

#[test]
fn saslauthd_unit_and_sysconfig() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("packaging/systemd/saslauthd.service")).unwrap();
    assert!(unit.contains("Type=forking"));
    assert!(unit.contains("PIDFile=/run/saslauthd/saslauthd.pid"));
    assert!(unit.contains("EnvironmentFile=/etc/sysconfig/saslauthd"));
    assert!(unit.contains("ExecStart=/usr/sbin/saslauthd -m $SOCKETDIR -a $MECH $FLAGS"));
    let sc = Sysconfig::load(root.join("etc/sysconfig/saslauthd").to_str().unwrap()).unwrap();
    let Action::Run(o) = parse(&sc.argv()) else {
        panic!("sysconfig argv refused: {:?}", sc.argv())
    };
    assert_eq!((o.run_path.as_str(), o.mech.as_str(), o.workers), ("/run/saslauthd", "pam", 5));
    let sc = Sysconfig::parse(
        "s",
        b"SOCKETDIR=/run/saslauthd\nMECH=ldap\nFLAGS=\"-O /etc/saslauthd.conf -c -t 900\"\n",
    )
    .unwrap();
    let Action::Run(o) = parse(&sc.argv()) else { panic!() };
    assert_eq!(
        (o.mech.as_str(), o.mech_option.as_deref(), o.cache, o.cache_ttl),
        ("ldap", Some("/etc/saslauthd.conf"), true, 900)
    );
}
