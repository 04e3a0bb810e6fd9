//! The committed corpora (`fuzz/corpus/<target>/`) replayed through the entry points as
//! ordinary tests: every input the fuzzer kept, and every crash it found (minimized, named
//! `regression-*`), runs on each `cargo test`.

/// Runs `entry` on every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`;
/// the number of files.
pub(crate) fn corpus(target: &str, entry: fn(&[u8])) -> usize {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");
    let mut files: Vec<_> = ["corpus", "regressions"]
        .iter()
        .flat_map(|dir| {
            std::fs::read_dir(format!("{root}/{dir}/{target}"))
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_else(|_| Vec::new())
        })
        .collect();
    files.sort();
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_default();
        let outcome = std::panic::catch_unwind(|| entry(&bytes));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
    files.len()
}

macro_rules! replays {
    ($($test:ident: $target:literal => $entry:path;)*) => {$(
        #[test]
        fn $test() {
            assert!(corpus($target, $entry) > 0, "fuzz/corpus/{} is empty", $target);
        }
    )*};
}

replays! {
    the_sse_corpus_replays: "sse" => super::sse;
    the_eventstream_corpus_replays: "eventstream" => super::eventstream;
    the_stream_corpus_replays: "stream" => super::stream;
    the_response_corpus_replays: "response" => super::response;
    the_request_corpus_replays: "request" => super::request;
    the_anthropic_ingress_corpus_replays: "anthropic_ingress" => super::anthropic_ingress;
}
