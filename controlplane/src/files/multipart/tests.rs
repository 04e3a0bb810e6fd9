//! Tests of the multipart reader: the SDK's wire format, every error, streaming and memory
//! bounds, and properties over arbitrary chunkings, truncations and bytes.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::stream;
use proptest::prelude::*;

use super::*;

type Part = (PartHeaders, Vec<u8>);

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn chunks_of(
    pieces: Vec<Vec<u8>>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Unpin + 'static {
    stream::iter(pieces.into_iter().map(|p| Ok(Bytes::from(p))))
}

/// Reads every part whole.
async fn read_all<S, E>(mut reader: MultipartReader<S>) -> Result<Vec<Part>, MultipartError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: Display,
{
    let mut parts = Vec::new();
    while let Some(headers) = reader.next_part().await? {
        let mut body = Vec::new();
        while let Some(chunk) = reader.next_chunk().await? {
            assert!(!chunk.is_empty(), "empty chunks are never handed out");
            body.extend_from_slice(&chunk);
        }
        parts.push((headers, body));
    }
    Ok(parts)
}

fn parse_pieces(
    pieces: Vec<Vec<u8>>,
    boundary: &str,
    limits: Limits,
) -> Result<Vec<Part>, MultipartError> {
    run(read_all(MultipartReader::new(
        chunks_of(pieces),
        boundary,
        limits,
    )))
}

fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, MultipartError> {
    parse_pieces(vec![body.to_vec()], boundary, Limits::default())
}

fn field(name: &str) -> PartHeaders {
    PartHeaders {
        name: name.into(),
        filename: None,
        content_type: None,
    }
}

/// A part with only a Content-Disposition header carrying `disposition`.
fn one_part(disposition: &str) -> Vec<u8> {
    format!("--b\r\nContent-Disposition: {disposition}\r\n\r\nx\r\n--b--\r\n").into_bytes()
}

fn first_headers(body: &[u8]) -> Result<PartHeaders, MultipartError> {
    parse(body, "b").map(|parts| parts[0].0.clone())
}

#[test]
fn the_boundary_comes_from_the_content_type() {
    let ok = |ct: &str| boundary(ct).unwrap();
    assert_eq!(
        ok("multipart/form-data; boundary=0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
        "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    );
    assert_eq!(
        ok("Multipart/Form-Data;charset=utf-8;BOUNDARY=\"a b:c\""),
        "a b:c"
    );
    assert_eq!(
        ok("multipart/form-data; boundary=----=_Part_1.x"),
        "----=_Part_1.x"
    );
    assert_eq!(
        ok(&format!("multipart/form-data; boundary={}", "z".repeat(70))).len(),
        70
    );

    let err = |ct: &str| boundary(ct).unwrap_err();
    assert_eq!(err("application/json"), MultipartError::NotMultipart);
    assert_eq!(
        err("multipart/mixed; boundary=x"),
        MultipartError::NotMultipart
    );
    assert_eq!(err(""), MultipartError::NotMultipart);
    assert_eq!(err("multipart/form-data"), MultipartError::MissingBoundary);
    assert_eq!(
        err("multipart/form-data; charset=utf-8"),
        MultipartError::MissingBoundary
    );
    // A `;` inside a quoted value separates nothing.
    assert_eq!(
        err("multipart/form-data; note=\"x; boundary=fake\""),
        MultipartError::MissingBoundary
    );
    assert_eq!(
        ok("multipart/form-data; note=\"x; boundary=fake\"; boundary=real"),
        "real"
    );
    for bad in [
        "boundary=\"\"",
        "boundary=",
        "boundary=\"unterminated",
        "boundary=\"trailing space \"",
        "boundary=\"cr\rlf\"",
        "boundary=semi\"colon\"",
        "boundary=caf\u{e9}",
        "=x",
        "boundary=a; boundary=a",
        "boundary=a; BOUNDARY=b",
    ] {
        assert_eq!(
            err(&format!("multipart/form-data; {bad}")),
            MultipartError::InvalidBoundary,
            "{bad}"
        );
    }
    assert_eq!(
        err(&format!("multipart/form-data; boundary={}", "z".repeat(71))),
        MultipartError::InvalidBoundary
    );
}

#[test]
fn the_openai_python_sdk_upload_parses() {
    // Captured from the official SDK (openai 3.54.0 over httpx2) calling
    // `client.files.create(file=("x.jsonl", b'{"custom_id":"r1"}\n'), purpose="batch")`
    // against a recording server: its Content-Type header and body, byte for byte.
    let ct = "multipart/form-data; boundary=ee6700339a0690207e888640b93f8f99";
    let body = b"--ee6700339a0690207e888640b93f8f99\r\n\
        Content-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
        --ee6700339a0690207e888640b93f8f99\r\n\
        Content-Disposition: form-data; name=\"file\"; filename=\"x.jsonl\"\r\n\
        Content-Type: application/octet-stream\r\n\r\n{\"custom_id\":\"r1\"}\n\r\n\
        --ee6700339a0690207e888640b93f8f99--\r\n"
        .to_vec();
    let file = b"{\"custom_id\":\"r1\"}\n";

    let mut reader = MultipartReader::new(
        chunks_of(vec![body.clone()]),
        &boundary(ct).unwrap(),
        Limits::default(),
    );
    run(async {
        assert_eq!(reader.next_part().await.unwrap(), Some(field("purpose")));
        assert_eq!(reader.read_text(64).await.unwrap(), "batch");
        let headers = reader.next_part().await.unwrap().unwrap();
        assert_eq!(headers.name, "file");
        assert_eq!(headers.filename.as_deref(), Some("x.jsonl"));
        assert_eq!(
            headers.content_type.as_deref(),
            Some("application/octet-stream")
        );
        let mut got = Vec::new();
        while let Some(chunk) = reader.next_chunk().await.unwrap() {
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, file);
        assert_eq!(reader.next_part().await.unwrap(), None);
        assert_eq!(reader.next_part().await.unwrap(), None);
        assert_eq!(reader.next_chunk().await.unwrap(), None);
    });
    let bytewise = body.iter().map(|b| vec![*b]).collect();
    let parts = parse_pieces(bytewise, &boundary(ct).unwrap(), Limits::default()).unwrap();
    assert_eq!(parts[1].1, file);
}

#[test]
fn filenames_are_unescaped_and_rfc_5987_is_preferred() {
    let filename = |disposition: &str| first_headers(&one_part(disposition)).unwrap().filename;
    assert_eq!(
        filename(r#"form-data; name="file"; filename="a\"b\\c.txt""#).as_deref(),
        Some("a\"b\\c.txt")
    );
    assert_eq!(
        filename("form-data; name=\"file\"; filename=\"r\u{e9}sum\u{e9} ../x.txt\"").as_deref(),
        Some("r\u{e9}sum\u{e9} ../x.txt")
    );
    assert_eq!(
        filename(
            "form-data; name=file; filename=\"rates.txt\"; filename*=UTF-8''%e2%82%ac%20rates.txt"
        )
        .as_deref(),
        Some("\u{20ac} rates.txt")
    );
    assert_eq!(
        filename("FORM-DATA ; Name = \"file\" ; FILENAME*=iso-8859-1'en'%A3.txt").as_deref(),
        Some("\u{a3}.txt")
    );
    assert_eq!(
        filename("form-data; name=\"f\"; filename=\"\"").as_deref(),
        Some("")
    );
    assert_eq!(filename("form-data; name=\"f\"; other=\"x\""), None);
}

#[test]
fn transport_padding_and_a_blank_preamble_are_accepted() {
    let body = b"\r\n\r\n--b \t\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b\t\r\n\
                 content-disposition:form-data;name=b\r\nX-Other: y\r\n\r\n2\r\n--b--  \r\nepilogue";
    let parts = parse(body, "b").unwrap();
    assert_eq!(
        parts,
        vec![(field("a"), b"1".to_vec()), (field("b"), b"2".to_vec())]
    );
}

#[test]
fn a_part_without_headers_or_body_is_read() {
    let parts = parse(
        b"--b\r\nContent-Disposition: form-data; name=e\r\n\r\n\r\n--b--",
        "b",
    )
    .unwrap();
    assert_eq!(parts, vec![(field("e"), Vec::new())]);
    assert_eq!(parse(b"--b--", "b").unwrap(), vec![]);
}

#[test]
fn next_part_skips_an_unread_body() {
    let body = b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nskipped\r\n--b\r\n\
                 Content-Disposition: form-data; name=b\r\n\r\nread\r\n--b--";
    let mut reader = MultipartReader::new(chunks_of(vec![body.to_vec()]), "b", Limits::default());
    run(async {
        assert_eq!(reader.next_part().await.unwrap().unwrap().name, "a");
        assert_eq!(reader.next_part().await.unwrap().unwrap().name, "b");
        assert_eq!(reader.read_text(10).await.unwrap(), "read");
        assert_eq!(reader.next_part().await.unwrap(), None);
    });
}

#[test]
fn a_preamble_is_refused() {
    for body in [
        &b"hello\r\n--b\r\n"[..],
        b"\r\n \r\n--b\r\n",
        b"--c\r\n",
        b"-b\r\n",
        b"\n-x",
    ] {
        assert_eq!(
            parse(body, "b").unwrap_err(),
            MultipartError::Preamble,
            "{body:?}"
        );
    }
}

#[test]
fn headers_over_the_limit_are_refused_however_they_arrive() {
    let limits = Limits {
        max_part_headers: 64,
        max_parts: 16,
    };
    let header = |len: usize| {
        let base = "Content-Disposition: form-data; name=a\r\nX: ";
        let pad = "y".repeat(len - base.len() - 4);
        format!("--b\r\n{base}{pad}\r\n\r\nbody\r\n--b--").into_bytes()
    };
    for (len, ok) in [(64, true), (65, false), (300, false)] {
        let body = header(len);
        let whole = parse_pieces(vec![body.clone()], "b", limits);
        let bytewise = parse_pieces(body.iter().map(|b| vec![*b]).collect(), "b", limits);
        assert_eq!(whole, bytewise);
        if ok {
            assert_eq!(whole.unwrap()[0].1, b"body");
        } else {
            assert_eq!(whole.unwrap_err(), MultipartError::HeadersTooLarge);
        }
    }
    // No end of headers at all: refused once the limit is reached, not buffered further.
    let mut endless = b"--b\r\nX: ".to_vec();
    endless.extend(std::iter::repeat_n(b'y', 10_000));
    assert_eq!(
        parse_pieces(vec![endless], "b", limits).unwrap_err(),
        MultipartError::HeadersTooLarge
    );
}

#[test]
fn malformed_headers_are_refused() {
    let part = |headers: &[u8]| {
        let mut body = b"--b\r\n".to_vec();
        body.extend_from_slice(headers);
        body.extend_from_slice(b"\r\n\r\nx\r\n--b--");
        body
    };
    for headers in [
        &b"Content-Disposition form-data; name=a"[..],
        b"Content-Disposition: form-data; name=a\r\n folded",
        b"Content-Disposition: form-data; name=a\nX: bare-lf",
        b"Content-Disposition: form-data; name=a\rX: bare-cr",
        b"Content Disposition: form-data; name=a",
        b": form-data; name=a",
        b"Content-Disposition: form-data; name=\"a\xff\"",
        b"Content-Disposition: form-data; name=a\r\ncontent-disposition: form-data; name=b",
        b"Content-Disposition: form-data; name=a\r\nContent-Type: a\r\nContent-Type: b",
        b"Content-Disposition: form-data; name=a; name=b",
        b"Content-Disposition: form-data; name=a; filename=x; FILENAME=y",
        b"Content-Disposition: form-data; name=\"a",
        b"Content-Disposition: form-data; name=a; filename*=UTF-8''%zz",
        b"Content-Disposition: form-data; name=a; filename*=UTF-8''%e2",
        b"Content-Disposition: form-data; name=a; filename*=UTF-8''%ff",
        b"Content-Disposition: form-data; name=a; filename*=koi8-r''x",
        b"Content-Disposition: form-data; name=a; filename*=x",
        b"Content-Disposition: form-data; name=a; junk",
        b"Content-Disposition: form-data; name=",
        b"Content-Disposition: form-data name=a",
    ] {
        assert_eq!(
            parse(&part(headers), "b").unwrap_err(),
            MultipartError::MalformedHeaders,
            "{}",
            String::from_utf8_lossy(headers)
        );
    }
    // What follows a boundary must be `--`, or padding and CRLF.
    for body in [
        &b"--bX\r\n"[..],
        b"--b -\r\n",
        b"--b\n",
        b"--b-x",
        b"--b\rx",
    ] {
        assert_eq!(
            parse(body, "b").unwrap_err(),
            MultipartError::MalformedHeaders,
            "{body:?}"
        );
    }
}

#[test]
fn a_part_needs_a_form_data_name() {
    for body in [
        &b"--b\r\n\r\nx\r\n--b--"[..],
        b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
        b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
        b"--b\r\nContent-Disposition: form-data; filename=x\r\n\r\nx\r\n--b--",
        b"--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b--",
    ] {
        assert_eq!(parse(body, "b").unwrap_err(), MultipartError::MissingName);
    }
}

#[test]
fn too_many_parts_are_refused() {
    let limits = Limits {
        max_part_headers: 8192,
        max_parts: 2,
    };
    let body = |n: usize| {
        let mut body = String::new();
        for i in 0..n {
            body.push_str(&format!(
                "--b\r\nContent-Disposition: form-data; name=p{i}\r\n\r\n{i}\r\n"
            ));
        }
        body.push_str("--b--\r\n");
        vec![body.into_bytes()]
    };
    assert_eq!(parse_pieces(body(2), "b", limits).unwrap().len(), 2);
    assert_eq!(
        parse_pieces(body(3), "b", limits).unwrap_err(),
        MultipartError::TooManyParts
    );
}

#[test]
fn text_fields_are_bounded_and_utf8() {
    let body = [
        "--b\r\nContent-Disposition: form-data; name=a\r\n\r\n0123456789\r\n--b\r\n".as_bytes(),
        "Content-Disposition: form-data; name=b\r\n\r\n\u{e9}\r\n--b\r\n".as_bytes(),
        b"Content-Disposition: form-data; name=c\r\n\r\n\xff\r\n--b--",
    ]
    .concat();
    let mut reader = MultipartReader::new(
        chunks_of(body.iter().map(|b| vec![*b]).collect()),
        "b",
        Limits::default(),
    );
    run(async {
        reader.next_part().await.unwrap();
        assert_eq!(
            reader.read_text(9).await.unwrap_err(),
            MultipartError::FieldTooLarge
        );
        // A field error is not final: the rest of the field is skipped.
        assert_eq!(reader.next_part().await.unwrap().unwrap().name, "b");
        assert_eq!(reader.read_text(2).await.unwrap(), "\u{e9}");
        assert_eq!(reader.next_part().await.unwrap().unwrap().name, "c");
        assert_eq!(
            reader.read_text(10).await.unwrap_err(),
            MultipartError::NotUtf8
        );
        assert_eq!(reader.next_part().await.unwrap(), None);
    });
}

#[test]
fn a_body_cut_short_is_truncated_and_errors_are_final() {
    for body in [
        &b""[..],
        b"\r\n",
        b"--b",
        b"--b\r\nContent-Disposition: form-data; name=a\r\n",
        b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nbody",
        b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nbody\r\n--b",
        b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nbody\r\n--b-",
        b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nbody\r\n--b\r",
    ] {
        assert_eq!(
            parse(body, "b").unwrap_err(),
            MultipartError::Truncated,
            "{body:?}"
        );
    }
    let mut reader = MultipartReader::new(
        chunks_of(vec![
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nxy".to_vec(),
        ]),
        "b",
        Limits::default(),
    );
    run(async {
        assert!(reader.next_part().await.unwrap().is_some());
        assert_eq!(
            reader.next_chunk().await.unwrap().as_deref(),
            Some(&b"xy"[..])
        );
        assert_eq!(
            reader.next_chunk().await.unwrap_err(),
            MultipartError::Truncated
        );
        assert_eq!(
            reader.next_chunk().await.unwrap_err(),
            MultipartError::Truncated
        );
        assert_eq!(
            reader.next_part().await.unwrap_err(),
            MultipartError::Truncated
        );
    });
}

#[test]
fn a_failing_stream_is_a_body_error() {
    let pieces: Vec<Result<Bytes, &str>> = vec![
        Ok(Bytes::from_static(
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx",
        )),
        Err("connection reset"),
    ];
    let reader = MultipartReader::new(stream::iter(pieces), "b", Limits::default());
    let err = run(read_all(reader)).unwrap_err();
    assert_eq!(err, MultipartError::Body("connection reset".into()));
    assert_eq!(
        err.message(),
        "the request body could not be read: connection reset"
    );
}

#[test]
fn an_invalid_boundary_fails_every_call() {
    let reader = MultipartReader::new(
        chunks_of(vec![b"--\r\r\n".to_vec()]),
        "\r",
        Limits::default(),
    );
    assert_eq!(
        run(read_all(reader)).unwrap_err(),
        MultipartError::InvalidBoundary
    );
}

#[test]
fn every_error_has_a_client_message() {
    for e in [
        MultipartError::NotMultipart,
        MultipartError::MissingBoundary,
        MultipartError::InvalidBoundary,
        MultipartError::Preamble,
        MultipartError::HeadersTooLarge,
        MultipartError::MalformedHeaders,
        MultipartError::MissingName,
        MultipartError::TooManyParts,
        MultipartError::FieldTooLarge,
        MultipartError::NotUtf8,
        MultipartError::Truncated,
    ] {
        let message = e.message();
        assert!(
            message.len() > 20 && message.contains("multipart"),
            "{message}"
        );
    }
}

/// Body bytes are handed out as they arrive, holding back only a possible delimiter start.
#[test]
fn body_bytes_stream_out_as_they_arrive() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<Bytes, Infallible>>();
    let body = stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut reader = MultipartReader::new(body, "bound", Limits::default());
    let send = |s: &'static [u8]| tx.send(Ok(Bytes::from_static(s))).unwrap();
    run(async {
        send(b"--bound\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\nhello");
        assert_eq!(reader.next_part().await.unwrap().unwrap().name, "f");
        assert_eq!(reader.next_chunk().await.unwrap().unwrap(), &b"hello"[..]);
        send(b" world\r\n--bou");
        assert_eq!(reader.next_chunk().await.unwrap().unwrap(), &b" world"[..]);
        assert_eq!(reader.buf.len(), 7, "holds back only \\r\\n--bou");
        send(b"x\r");
        assert_eq!(
            reader.next_chunk().await.unwrap().unwrap(),
            &b"\r\n--boux"[..]
        );
        assert_eq!(reader.buf.len(), 1, "holds back only \\r");
        send(b"\n--bound--");
        assert_eq!(reader.next_chunk().await.unwrap(), None);
        assert_eq!(reader.next_part().await.unwrap(), None);
    });
}

/// A large upload in big chunks never holds more than one chunk plus the delimiter.
#[test]
fn memory_stays_bounded_by_a_chunk() {
    let boundary = "x".repeat(70);
    let chunk = 64 * 1024;
    let mut body =
        format!("--{boundary}\r\nContent-Disposition: form-data; name=f\r\n\r\n").into_bytes();
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| b"\r\n-x"[(i % 4) as usize])
        .collect();
    body.extend_from_slice(&payload);
    body.extend_from_slice(format!("\r\n--{boundary}--").as_bytes());
    let pieces: Vec<Vec<u8>> = body.chunks(chunk).map(<[u8]>::to_vec).collect();
    let mut reader = MultipartReader::new(chunks_of(pieces), &boundary, Limits::default());
    run(async {
        reader.next_part().await.unwrap();
        let mut total = 0;
        while let Some(piece) = reader.next_chunk().await.unwrap() {
            assert!(piece.len() <= chunk + boundary.len() + 4);
            assert!(reader.buf.len() < chunk + boundary.len() + 4);
            total += piece.len();
        }
        assert_eq!(total, payload.len());
        assert_eq!(reader.next_part().await.unwrap(), None);
    });
}

// Properties.

/// A boundary of RFC 2046 characters, biased to dashes and a few letters.
fn boundary_strategy() -> impl Strategy<Value = String> {
    "[-a-c0-9'()+_,./:=? ]{0,68}[-abc]".prop_map(|s| s.to_string())
}

/// Body bytes made of pieces that resemble the delimiter, CR/LF and dashes, and random bytes.
fn body_strategy(boundary: String) -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..8),
        (0..=boundary.len()).prop_map({
            let boundary = boundary.clone();
            move |n| format!("\r\n--{}", &boundary[..n]).into_bytes()
        }),
        (0..=boundary.len()).prop_map(move |n| format!("--{}", &boundary[..n]).into_bytes()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"-".to_vec()),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// A generated part: name, filename, content type, body.
type FormPart = (String, Option<String>, Option<String>, Vec<u8>);

#[derive(Debug, Clone)]
struct Form {
    boundary: String,
    parts: Vec<FormPart>,
}

impl Form {
    fn encode(&self) -> Vec<u8> {
        let b = &self.boundary;
        let mut out = Vec::new();
        for (name, filename, content_type, body) in &self.parts {
            out.extend_from_slice(
                format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
            );
            if let Some(f) = filename {
                let escaped = f.replace('\\', "\\\\").replace('"', "\\\"");
                out.extend_from_slice(format!("; filename=\"{escaped}\"").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            if let Some(t) = content_type {
                out.extend_from_slice(format!("Content-Type: {t}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        out
    }

    fn expected(&self) -> Vec<Part> {
        self.parts
            .iter()
            .map(|(name, filename, content_type, body)| {
                let headers = PartHeaders {
                    name: name.clone(),
                    filename: filename.clone(),
                    content_type: content_type.clone(),
                };
                (headers, body.clone())
            })
            .collect()
    }
}

fn form_strategy() -> impl Strategy<Value = Form> {
    boundary_strategy()
        .prop_flat_map(|boundary| {
            let part = (
                "[a-z_]{1,8}",
                proptest::option::of("[a-zA-Z0-9 ._\"\\\\\u{e9}]{0,12}"),
                proptest::option::of("[a-z]{1,6}/[a-z.+-]{1,10}"),
                body_strategy(boundary.clone()),
            );
            (Just(boundary), proptest::collection::vec(part, 0..5))
        })
        .prop_map(|(boundary, parts)| Form { boundary, parts })
        .prop_filter("a body must not contain the delimiter", |form| {
            let delimiter = format!("\r\n--{}", form.boundary).into_bytes();
            form.parts
                .iter()
                .all(|p| memmem::find(&[&b"\r\n"[..], &p.3].concat(), &delimiter).is_none())
        })
}

/// `body` cut at `cuts` (indices, taken modulo its length).
fn split(body: &[u8], cuts: &[prop::sample::Index]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
    at.extend([0, body.len()]);
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| body[w[0]..w[1]].to_vec()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn any_chunking_parses_to_the_same_parts(
        form in form_strategy(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
    ) {
        let body = form.encode();
        let expected = form.expected();
        let limits = Limits::default();
        prop_assert_eq!(parse_pieces(vec![body.clone()], &form.boundary, limits), Ok(expected.clone()));
        prop_assert_eq!(parse_pieces(split(&body, &cuts), &form.boundary, limits), Ok(expected.clone()));
        let bytewise = body.iter().map(|b| vec![*b]).collect();
        prop_assert_eq!(parse_pieces(bytewise, &form.boundary, limits), Ok(expected));
    }

    #[test]
    fn a_truncated_body_is_truncated_or_complete(
        form in form_strategy(),
        cut in any::<prop::sample::Index>(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let body = form.encode();
        let cut = cut.index(body.len());
        let result = parse_pieces(split(&body[..cut], &cuts), &form.boundary, Limits::default());
        // Complete once the closing `--boundary--` is whole (its CRLF may be missing).
        if cut + 2 >= body.len() {
            prop_assert_eq!(result, Ok(form.expected()));
        } else {
            prop_assert_eq!(result, Err(MultipartError::Truncated));
        }
    }

    #[test]
    fn random_bytes_never_panic(
        boundary in boundary_strategy(),
        noise in proptest::collection::vec(any::<u8>(), 0..512),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let _ = parse_pieces(split(&noise, &cuts), &boundary, Limits::default());
    }

    #[test]
    fn mangled_forms_never_panic_and_split_alike(
        form in form_strategy(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..16),
    ) {
        let mut body = form.encode();
        for (at, byte) in &edits {
            let at = at.index(body.len());
            body[at] = *byte;
        }
        let limits = Limits { max_part_headers: 128, max_parts: 3 };
        let whole = parse_pieces(vec![body.clone()], &form.boundary, limits);
        prop_assert_eq!(parse_pieces(split(&body, &cuts), &form.boundary, limits), whole);
    }
}

#[test]
fn reader_futures_are_send_when_the_body_is() {
    fn send<T: Send>(_: T) {}
    let body = stream::empty::<Result<Bytes, std::io::Error>>();
    let mut reader = MultipartReader::new(body, "b", Limits::default());
    send(reader.next_part());
    send(reader.next_chunk());
    send(reader.read_text(1));
}
