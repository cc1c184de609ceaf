use super::*;

async fn lines(input: &[u8], max: usize) -> Vec<Result<String, String>> {
    let mut reader = LineReader::new(input, max);
    let mut out = Vec::new();
    loop {
        match reader.next_line().await {
            Ok(line) => out.push(Ok(String::from_utf8_lossy(line).into_owned())),
            Err(LineError::Eof) => break,
            Err(e) => {
                out.push(Err(e.to_string()));
                break;
            }
        }
    }
    out
}

#[tokio::test]
async fn splits_lines_and_skips_blank_ones() {
    let got = lines(b"{\"a\":1}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}", 100).await;
    assert_eq!(got, vec![Ok("{\"a\":1}".into()), Ok("{\"b\":2}".into())]);
}

#[tokio::test]
async fn oversized_line_is_an_error_not_a_cut() {
    let mut input = vec![b'x'; 50];
    input.push(b'\n');
    let got = lines(&input, 10).await;
    assert_eq!(got.len(), 1);
    assert!(got[0].as_ref().is_err_and(|e| e.contains("larger than 10")), "{got:?}");
    // Exactly at the limit is fine.
    let got = lines(b"0123456789\n", 10).await;
    assert_eq!(got, vec![Ok("0123456789".into())]);
}

#[tokio::test]
async fn stderr_is_drained_in_bounded_pieces_and_long_lines_are_cut() {
    use tokio::io::AsyncReadExt as _;
    // 20 MB without a newline, then two short lines: kept at most MAX_STDERR_LINE of the first.
    let flood = tokio::io::repeat(b'x').take(20_000_000).chain(&b"\nsecond\nthird"[..]);
    let summary = drain_stderr(flood, "fx".into(), 2, None).await;
    assert_eq!(summary, StderrSummary { logged: 2, dropped: 1, truncated: 1 });
    // Exactly at the limit is not cut; one byte more is.
    let mut exact = vec![b'y'; MAX_STDERR_LINE];
    exact.push(b'\n');
    exact.extend(vec![b'z'; MAX_STDERR_LINE + 1]);
    let metrics = Arc::new(crate::telemetry::Metrics::new());
    let summary = drain_stderr(exact.as_slice(), "fx".into(), 10, Some(metrics.clone())).await;
    assert_eq!(summary, StderrSummary { logged: 2, dropped: 0, truncated: 1 });
    assert!(metrics.render().contains(r#"switchboard_limits_total{limit="stderr_line"} 1"#));
}

mod properties {
    use proptest::prelude::*;

    use super::super::*;

    proptest! {
        /// Any bytes, any limit: the reader returns lines no longer than the limit, or a
        /// clean error; it never panics and never returns a cut line.
        #[test]
        fn framing_never_cuts_or_panics(input in prop::collection::vec(any::<u8>(), 0..2000), max in 1usize..200) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            runtime.block_on(async {
                let mut reader = LineReader::new(input.as_slice(), max);
                while let Ok(line) = reader.next_line().await {
                    assert!(line.len() <= max + 1 && !line.contains(&b'\n'));
                }
            });
        }
    }
}
