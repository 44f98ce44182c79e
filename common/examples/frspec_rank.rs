//! Builds a drafter ranking file (FR-Spec, `ouro_common::model::vocab`):
//! token ids of a GGUF model's tokenizer ranked by their frequency in a
//! local corpus. `deploy/vocab/build-frspec.sh` runs it on the corpus the
//! shipped file was made from; deploy/vocab/README.md says which.
//!
//! ```text
//! cargo run -p ouro-common --example frspec_rank -- --gguf MODEL.gguf --top 32768 \
//!     --out deploy/vocab/qwen2.5-frspec-32k.txt --source rust=LIST --source python=LIST ...
//! ```
//!
//! Each `--source NAME=LIST` is a file listing the corpus files of one kind
//! (one path a line, read as UTF-8, invalid bytes replaced); each `--words
//! NAME=FILE` is a word frequency list (`frequency<TAB>text` lines, the text
//! tokenized as written, its tokens counted `frequency` times), for general
//! language no local file holds. A source's size does not set its weight:
//! an id's score is the weighted mean over the sources of its share of that
//! source's tokens (weight 1 unless `--weight NAME=W`), so a few hundred
//! megabytes of Rust cannot drown the prose. `--max-bytes N` caps what is
//! read of each file source (files in list order, the file that crosses the
//! cap read whole).
//!
//! The file starts with the ids that must stay draftable whatever the
//! corpus says, in id order: the tokenizer's added tokens (control tokens
//! such as `<|im_start|>`, and user-defined ones), its stop and BOS/EOS ids
//! and, for a byte-level BPE, its 256 single-byte tokens (any text can then
//! still be drafted). Then come the corpus's ids by score, ties to the lower
//! id, up to `--top` ids; ids the corpus never produced are left out.
//!
//! Why not the tokenizer's merge order, which needs no corpus: a merge's
//! rank says how frequent a pair was while the tokenizer was being trained,
//! part-way through merging, not how often the finished token appears in
//! text. Early merges are often fragments that later merges absorb (they
//! rarely survive as tokens of their own), the training corpus is not the
//! text a drafter writes, and added tokens have no merge at all. Counting
//! the drafter's kind of text measures the thing itself (deploy/vocab/README.md
//! compares the two on the reference answers).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ouro_common::model::gguf::read_content;
use ouro_common::model::RankedVocab;
use ouro_common::tokenizer::{Tokenizer, TokenizerKind};

enum Kind {
    Files(Vec<PathBuf>),
    /// `(frequency, text)` pairs.
    Words(Vec<(f64, String)>),
}

struct Source {
    name: String,
    kind: Kind,
    weight: f64,
}

struct Args {
    gguf: PathBuf,
    top: usize,
    out: PathBuf,
    max_bytes: u64,
    threads: usize,
    sources: Vec<Source>,
    notes: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: frspec_rank --gguf MODEL.gguf --out FILE [--top 32768] [--max-bytes N] [--threads N] \
         [--note TEXT]... [--weight NAME=W]... --source NAME=LISTFILE... [--words NAME=FILE]..."
    );
    std::process::exit(2)
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut gguf, mut out, mut top, mut max_bytes, mut threads) = (None, None, 32768, u64::MAX, 2);
    let (mut sources, mut notes, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--gguf" => gguf = Some(PathBuf::from(value()?)),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--top" => top = value()?.parse().map_err(|e| format!("--top: {e}"))?,
            "--max-bytes" => max_bytes = value()?.parse().map_err(|e| format!("--max-bytes: {e}"))?,
            "--threads" => threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--note" => notes.push(value()?),
            "--source" => {
                let v = value()?;
                let (name, list) = v.split_once('=').ok_or("--source wants NAME=LISTFILE")?;
                let text = std::fs::read_to_string(list).map_err(|e| format!("{list}: {e}"))?;
                let files = text.lines().filter(|l| !l.trim().is_empty()).map(PathBuf::from).collect();
                sources.push(Source { name: name.to_string(), kind: Kind::Files(files), weight: 1.0 });
            }
            "--words" => {
                let v = value()?;
                let (name, list) = v.split_once('=').ok_or("--words wants NAME=FILE")?;
                let text = std::fs::read_to_string(list).map_err(|e| format!("{list}: {e}"))?;
                let mut words = Vec::new();
                for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
                    let bad = || format!("{list}: line {}: expected `frequency<TAB>text`", n + 1);
                    let (f, w) = line.split_once('\t').ok_or_else(bad)?;
                    let f: f64 = f.parse().map_err(|_| bad())?;
                    if !(f.is_finite() && f >= 0.0) {
                        return Err(bad());
                    }
                    words.push((f, w.to_string()));
                }
                sources.push(Source { name: name.to_string(), kind: Kind::Words(words), weight: 1.0 });
            }
            "--weight" => {
                let v = value()?;
                let (name, w) = v.split_once('=').ok_or("--weight wants NAME=W")?;
                let w: f64 = w.parse().map_err(|e| format!("--weight {v}: {e}"))?;
                if !(w.is_finite() && w > 0.0) {
                    return Err(format!("--weight {v}: not a positive weight"));
                }
                weights.push((name.to_string(), w));
            }
            "-h" | "--help" => usage(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let (Some(gguf), Some(out)) = (gguf, out) else { usage() };
    if sources.is_empty() || top == 0 {
        usage();
    }
    for (name, w) in weights {
        let s = sources.iter_mut().find(|s| s.name == name).ok_or(format!("--weight {name}: no such source"))?;
        s.weight = w;
    }
    Ok(Args { gguf, top, out, max_bytes, threads: threads.max(1), sources, notes })
}

/// Token counts of one source, and what was read of it.
struct Counts {
    ids: Vec<f64>,
    tokens: f64,
    bytes: u64,
    files: usize,
}

impl Counts {
    fn new(vocab: usize) -> Self {
        Self { ids: vec![0.0; vocab], tokens: 0.0, bytes: 0, files: 0 }
    }

    fn add(&mut self, ids: &[u32], times: f64) {
        for &id in ids {
            if let Some(n) = self.ids.get_mut(id as usize) {
                *n += times;
                self.tokens += times;
            }
        }
    }
}

fn count_source(tokenizer: &Tokenizer, src: &Source, vocab: usize, args: &Args) -> Counts {
    match &src.kind {
        Kind::Files(files) => count_files(tokenizer, files, vocab, args),
        Kind::Words(words) => {
            let mut c = Counts::new(vocab);
            for (f, text) in words {
                if let Ok(ids) = tokenizer.encode(text, false) {
                    c.add(&ids, *f);
                    c.bytes += text.len() as u64;
                    c.files += 1;
                }
            }
            c
        }
    }
}

fn count_files(tokenizer: &Tokenizer, files: &[PathBuf], vocab: usize, args: &Args) -> Counts {
    // The files within the byte cap, in list order, so the sample does not
    // depend on the thread count.
    let mut chosen = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        if bytes >= args.max_bytes {
            break;
        }
        let Ok(meta) = std::fs::metadata(f) else { continue };
        bytes += meta.len();
        chosen.push(f.as_path());
    }
    let next = AtomicUsize::new(0);
    let parts: Vec<Counts> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.threads)
            .map(|_| {
                s.spawn(|| {
                    let mut c = Counts::new(vocab);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(path) = chosen.get(i) else { break };
                        let Ok(raw) = std::fs::read(path) else { continue };
                        let text = String::from_utf8_lossy(&raw);
                        // Control tokens written in a file are its text, as in a chat message.
                        let Ok(ids) = tokenizer.encode(&text, false) else { continue };
                        c.add(&ids, 1.0);
                        c.bytes += raw.len() as u64;
                        c.files += 1;
                    }
                    c
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a counting thread panicked")).collect()
    });
    let mut total = Counts::new(vocab);
    for p in parts {
        total.ids.iter_mut().zip(&p.ids).for_each(|(a, b)| *a += b);
        total.tokens += p.tokens;
        total.bytes += p.bytes;
        total.files += p.files;
    }
    total
}

/// Ids every ranking keeps (see the module docs).
fn always(tokenizer: &Tokenizer, vocab: usize) -> BTreeSet<u32> {
    let info = tokenizer.info();
    let mut set: BTreeSet<u32> = tokenizer.inner().get_added_tokens_decoder().into_keys().collect();
    set.extend(info.stop_ids.iter().copied());
    set.extend(info.bos);
    set.extend(info.eos);
    if matches!(info.kind, TokenizerKind::ByteLevelBpe { .. }) {
        for c in tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet() {
            set.extend(tokenizer.token_to_id(&c.to_string()));
        }
    }
    set.retain(|&id| (id as usize) < vocab);
    set
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("frspec_rank: {e}");
        usage()
    });
    if let Err(e) = run(&args) {
        eprintln!("frspec_rank: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let ct = read_content(&args.gguf)?;
    let tokenizer = Tokenizer::from_gguf(&ct)?;
    // The ids must fit the model's LM head: its rows, not the tokenizer's count.
    let vocab = ct
        .tensor_infos
        .get("token_embd.weight")
        .and_then(|t| t.shape.dims().first().copied())
        .ok_or("the GGUF has no token_embd.weight")?;
    let started = std::time::Instant::now();
    let mut score = vec![0f64; vocab];
    let mut lines = Vec::new();
    for src in &args.sources {
        let c = count_source(&tokenizer, src, vocab, args);
        if c.tokens <= 0.0 {
            return Err(format!("source {} produced no tokens", src.name).into());
        }
        let distinct = c.ids.iter().filter(|&&n| n > 0.0).count();
        let line = match src.kind {
            Kind::Files(_) => format!(
                "{} (weight {}): {} files, {:.1} MB, {:.0} tokens, {distinct} distinct ids",
                src.name,
                src.weight,
                c.files,
                c.bytes as f64 / 1e6,
                c.tokens
            ),
            Kind::Words(_) => {
                format!("{} (weight {}): {} weighted words, {distinct} distinct ids", src.name, src.weight, c.files)
            }
        };
        eprintln!("{line} ({:.0} s)", started.elapsed().as_secs_f64());
        lines.push(line);
        let total_weight: f64 = args.sources.iter().map(|s| s.weight).sum();
        for (s, &n) in score.iter_mut().zip(&c.ids) {
            *s += n / c.tokens * src.weight / total_weight;
        }
    }
    let keep = always(&tokenizer, vocab);
    let mut ids: Vec<u32> = keep.iter().copied().collect();
    let mut ranked: Vec<u32> = (0..vocab as u32).filter(|id| score[*id as usize] > 0.0 && !keep.contains(id)).collect();
    ranked.sort_by(|&a, &b| score[b as usize].total_cmp(&score[a as usize]).then(a.cmp(&b)));
    ids.extend(ranked);
    ids.truncate(args.top);
    let covered: f64 = ids.iter().map(|&id| score[id as usize]).sum();
    let ranking = RankedVocab { tokenizer: tokenizer.info().identity.clone(), vocab, ids };
    let name = args.gguf.file_name().map_or_else(|| args.gguf.display().to_string(), |n| n.to_string_lossy().into());
    let mut header = vec![
        format!(
            "FR-Spec ranking for the drafter: {} token ids of the tokenizer of {name}, most frequent first.",
            ranking.ids.len()
        ),
        "Format and use: ouro_common::model::vocab; how it was made: deploy/vocab/README.md.".into(),
        format!(
            "The first {} ids are always kept (added/control tokens, stop ids, the 256 byte tokens), in id order.",
            keep.len()
        ),
        "Then by weighted mean per-source frequency in this corpus (no benchmark data):".into(),
    ];
    header.extend(lines.iter().map(|l| format!("  {l}")));
    header.extend(args.notes.iter().cloned());
    header
        .push(format!("These ids cover {:.2}% of the corpus's tokens (weighted mean over sources).", covered * 100.0));
    write(&args.out, &ranking.to_text(&header))?;
    eprintln!("wrote {} ids to {} ({:.2}% coverage)", ranking.ids.len(), args.out.display(), covered * 100.0);
    Ok(())
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}
