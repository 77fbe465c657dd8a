#![no_main]
// The front end's stream scanners on any input, in any chunking: never a
// panic; the client scanner accounts for every byte exactly once (heads
// and passes add up to the input) and a head is one whole line; the
// server scanner never counts more tagged replies than there are lines;
// head_words and fetched take any line.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use mumail::proto::imap::stream::*;
    let Some((&k, data)) = data.split_first() else { return };
    let chunk = (k as usize % 61) + 1;
    let mut scan = ClientScan::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut seen = 0usize;
    for c in data.chunks(chunk) {
        buf.extend_from_slice(c);
        while let Some(p) = scan.next(&buf) {
            let n = match p {
                Piece::Head(n) => {
                    assert!(buf[..n].ends_with(b"\n"));
                    assert_eq!(buf[..n].iter().filter(|&&b| b == b'\n').count(), 1);
                    let _ = head_words(&buf[..n], 4);
                    n
                }
                Piece::Pass(n) => n,
            };
            assert!(n > 0 && n <= buf.len());
            seen += n;
            buf.drain(..n);
        }
    }
    assert_eq!(seen + buf.len(), data.len());
    let mut s = ServerScan::default();
    for c in data.chunks(chunk) {
        s.feed(c);
    }
    assert!(s.tagged as usize <= data.iter().filter(|&&b| b == b'\n').count());
    let _ = fetched(data);
});
