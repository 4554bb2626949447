//! A mutation fuzzer for the job language: job files from `testdata/` and `modules/`
//! mutated (bytes flipped, ranges cut and repeated, HCL tokens and odd values inserted, files
//! spliced together) and fed to what `validate` and `plan` run — `config::load`, the
//! registry's block checks, the catalog checks and the resolver. Any panic fails the test;
//! errors are the expected answer to bad input.
//!
//! CI runs `SKYFORM_FUZZ_INPUTS` inputs (default 3,000); a long run:
//! `SKYFORM_FUZZ_INPUTS=1000000 cargo test --release --test it fuzz -- --nocapture`
//! prints the inputs tried, panics and peak memory.

use rand::{Rng, SeedableRng};
use skyform::catalog::Catalog;
use skyform::config::{load, LoadOptions};
use skyform::providers::Registry;
use std::path::{Path, PathBuf};

fn corpus() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.to_string_lossy().ends_with(".sky.hcl") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&super::root().join("testdata"), &mut files);
    walk(&super::root().join("modules"), &mut files);
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "${",
    "%{",
    "=",
    ",",
    "\n",
    "#",
    "//",
    "/*",
    "<<EOT\n",
    "EOT\n",
    "var.",
    "local.",
    "task.",
    "storage.",
    "module.",
    "resource.",
    ".outputs.",
    "1e400",
    "-1",
    "0",
    "999999999999999999999",
    "1.5",
    "true",
    "null",
    "\"*\"",
    "\"V100:8\"",
    "\"8+\"",
    "\"12h\"",
    "\"aws:us-*\"",
    "file(\"/dev/zero\")",
    "length(",
    "format(\"%s\"",
    "[[[[[[[[[[[[[[[[",
    "]]]]]]]]]]]]]]]]",
    "task \"x\" {\n",
    "variable \"v\" {\n",
    "locals {\n",
    "depends_on = [task.a]",
    "\u{feff}",
    "\u{0}",
    "é",
    "\\",
    "?",
    ":",
    "...",
    "for x in [1] : x",
];

fn mutate(rng: &mut rand_chacha::ChaCha8Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut v = corpus[rng.gen_range(0..corpus.len())].clone();
    for _ in 0..rng.gen_range(1..3) {
        let n = v.len().max(1);
        match rng.gen_range(0..7) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let t = TOKENS[rng.gen_range(0..TOKENS.len())].as_bytes();
                let i = rng.gen_range(0..=v.len());
                v.splice(i..i, t.iter().copied());
            }
            2 if v.len() > 2 => {
                let a = rng.gen_range(0..v.len());
                let b = (a + rng.gen_range(1..64)).min(v.len());
                v.drain(a..b);
            }
            3 if v.len() > 2 => {
                let a = rng.gen_range(0..v.len());
                let b = (a + rng.gen_range(1..128)).min(v.len());
                let piece = v[a..b].to_vec();
                let i = rng.gen_range(0..=v.len());
                v.splice(i..i, piece);
            }
            4 => {
                let other = &corpus[rng.gen_range(0..corpus.len())];
                let cut = rng.gen_range(0..n.min(v.len()).max(1));
                let from = rng.gen_range(0..other.len().max(1)).min(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            5 => {
                let i = rng.gen_range(0..=v.len());
                let digits: String =
                    (0..rng.gen_range(1..40)).map(|_| char::from(b'0' + rng.gen_range(0..10))).collect();
                v.splice(i..i, digits.into_bytes());
            }
            _ => {
                let i = rng.gen_range(0..=v.len());
                let depth = rng.gen_range(1..200);
                v.splice(i..i, std::iter::repeat_n(b'(', depth));
            }
        }
    }
    v
}

/// Peak resident memory of this process, from /proc (kB).
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn the_loader_never_panics_on_mutated_jobs() {
    let inputs: u64 = std::env::var("SKYFORM_FUZZ_INPUTS").ok().and_then(|s| s.parse().ok()).unwrap_or(3_000);
    let corpus = corpus();
    assert!(corpus.len() >= 20, "the corpus is the repository's job files");
    let registry = Registry::builtin();
    let opts = LoadOptions { clouds: registry.names(), ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("main.sky.hcl");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5c7f_0e11);
    let (mut panics, mut valid) = (Vec::new(), 0u64);
    let t0 = std::time::Instant::now();
    for i in 0..inputs {
        let input = mutate(&mut rng, &corpus);
        std::fs::write(&file, &input).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let Ok(loaded) = load(dir.path(), &opts) else { return false };
            let _ = registry.check(&loaded);
            if let Ok(catalog) = Catalog::for_job(&loaded.spec, &registry) {
                let _ = skyform::pipeline::validate(&loaded, &registry, &catalog);
            }
            true
        }));
        match r {
            Ok(ok) => valid += ok as u64,
            Err(_) => {
                let keep =
                    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("skyform-fuzz-panic-{i}.sky.hcl"));
                std::fs::write(&keep, &input).unwrap();
                panics.push(keep);
            }
        }
    }
    eprintln!(
        "fuzz: {inputs} inputs in {:.1} s, {valid} loaded, {} panics, peak RSS {} MB",
        t0.elapsed().as_secs_f64(),
        panics.len(),
        peak_rss_kb() / 1024
    );
    assert!(panics.is_empty(), "inputs that panicked (kept): {panics:?}");
}
