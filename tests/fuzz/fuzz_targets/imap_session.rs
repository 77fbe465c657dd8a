#![no_main]
//! The whole imapd session on a real store in a temp dir, preauthenticated
//! as `fuzz`: the input is what a client sends; the session must end
//! without a panic when the client closes.
use std::sync::{Arc, OnceLock};

fn ctx() -> Arc<mumail::daemon::cyrus::Ctx> {
    static CTX: OnceLock<(tempfile::TempDir, Arc<mumail::daemon::cyrus::Ctx>)> = OnceLock::new();
    CTX.get_or_init(|| {
        let d = tempfile::tempdir().unwrap();
        let conf = d.path().join("imapd.conf");
        std::fs::write(
            &conf,
            format!(
                "configdirectory: {0}/conf\npartition-default: {0}/spool\nmaxmessagesize: 100000\nsasl_pwcheck_method: saslauthd\nsasl_saslauthd_path: {0}/none\n",
                d.path().display()
            ),
        )
        .unwrap();
        let c = Arc::new(mumail::daemon::cyrus::Ctx::load(conf.to_str().unwrap(), "imap", "imap").unwrap());
        c.store.create("user.fuzz", None, None).unwrap();
        (d, c)
    })
    .1
    .clone()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(mumail::daemon::imapd::serve_io(ctx(), server, Some("fuzz")));
        let input = data.to_vec();
        let writer = async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), client.read_to_end(&mut out)).await;
            out
        };
        let out = writer.await;
        assert!(out.starts_with(b"* PREAUTH"));
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
    });
});
