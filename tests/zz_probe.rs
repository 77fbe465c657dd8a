mod harness;
use harness::*;

#[test]
fn zz() {
    let d = tempfile::tempdir().unwrap();
    let ours = Backend::start(&d.path().join("ours"), "");
    let out = python("import socket,sys,time\ns=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1]);s.settimeout(3)\nprint(s.recv(999))\ns.sendall(b'HELO x\\r\\n')\ntry:\n    print(s.recv(999))\nexcept Exception as e: print('ERR', e)\ns.sendall(b'MAIL FROM:<a@b>\\r\\n')\ntry:\n    print(s.recv(999))\nexcept Exception as e: print('ERR', e)\n", &[ours.lmtp_sock.to_str().unwrap()]);
    println!("OUT {out}");
}
