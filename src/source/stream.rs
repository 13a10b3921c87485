//! Reading a byte stream in bounded windows cut at content-defined boundaries.

use std::io::Read;
use std::ops::Range;

use crate::chunker::Chunker;

/// Window size: at least one chunk of the largest size (so that each full window yields at
/// least one final chunk), small enough that the few windows in flight bound memory.
pub const WINDOW: usize = 8 << 20;

/// Reads `r` to its end, handing each window's buffer (ending at its last chunk boundary) and
/// the chunk ranges in it to `f`, which may keep the buffer (a worker seals it while the next
/// window is read). Bytes after the last boundary of a window are carried into the next one.
/// `size_hint` (a file's size) keeps the buffer of a small input small. Returns the number of
/// bytes read.
pub fn for_each_window<R: Read, E: From<std::io::Error>>(
    mut r: R,
    chunker: &Chunker,
    size_hint: Option<u64>,
    mut f: impl FnMut(Vec<u8>, Vec<Range<usize>>) -> Result<(), E>,
) -> Result<u64, E> {
    let full = WINDOW.max(chunker.max_size());
    // One byte more than the expected size, so that end of file is seen in the first window.
    let mut window = size_hint.map_or(full, |h| {
        usize::try_from(h).map_or(full, |h| h.saturating_add(1).min(full))
    });
    let mut buf: Vec<u8> = Vec::new();
    let mut total = 0u64;
    let mut eof = false;
    while !eof {
        // The input is longer than hinted, or a carried tail fills the window: use it all
        // (the carry is below max_size, at most `full`, so a full window always progresses).
        if window <= buf.len() {
            window = full;
        }
        // Fill the window (into spare capacity: no zeroing of bytes about to be read).
        let start = buf.len();
        let want = window - start;
        buf.reserve_exact(want);
        let got = (&mut r).take(want as u64).read_to_end(&mut buf)?;
        eof = got < want;
        let filled = buf.len();
        total += (filled - start) as u64;
        // Cut final chunks.
        let mut ranges = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            let rest = buf.len() - pos;
            let len = chunker.next_cut(&buf[pos..]);
            // A cut before the window's end is where the whole stream would be cut too
            // (FastCDC looks no further than the boundary it finds); a cut at the end is
            // final only at end of input or at the largest chunk size. Carrying just the
            // unfinished chunk keeps the copy into the next window small.
            if !eof && len == rest && rest < chunker.max_size() {
                break;
            }
            ranges.push(pos..pos + len);
            pos += len;
        }
        if ranges.is_empty() {
            buf.drain(..pos);
        } else {
            let mut next = Vec::with_capacity(window.min(full));
            next.extend_from_slice(&buf[pos..]);
            let mut done = std::mem::replace(&mut buf, next);
            done.truncate(pos);
            f(done, ranges)?;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::ChunkerParams;
    use crate::crypto::MasterKey;

    #[test]
    fn windows_match_whole_buffer_chunking() {
        let (g, gl) = MasterKey::from_seed(5).gear_tables();
        let c = Chunker::new(
            ChunkerParams {
                min_size: 1024,
                avg_size: 4096,
                max_size: 16384,
            },
            g,
            gl,
        );
        let mut data = vec![0u8; 3 * WINDOW + 12345];
        blake3::Hasher::new().finalize_xof().fill(&mut data);
        let whole: Vec<Vec<u8>> = c.chunks(&data).map(|r| data[r].to_vec()).collect();
        let mut streamed = Vec::new();
        let n = for_each_window::<_, std::io::Error>(&data[..], &c, None, |buf, rs| {
            streamed.extend(rs.into_iter().map(|r| buf[r].to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(streamed, whole);
        // Wrong hints (too small, too large) change nothing but the buffer size.
        for hint in [0u64, 1, 5000, 100_000, 1 << 40] {
            let mut got = Vec::new();
            for_each_window::<_, std::io::Error>(&data[..200_000], &c, Some(hint), |buf, rs| {
                got.extend(rs.into_iter().map(|r| buf[r].to_vec()));
                Ok(())
            })
            .unwrap();
            let want: Vec<Vec<u8>> = c
                .chunks(&data[..200_000])
                .map(|r| data[r].to_vec())
                .collect();
            assert_eq!(got, want, "hint {hint}");
        }
        // Default bounds, where the largest chunk is as big as a window, on data with runs
        // of zeros (cut at the largest size) between random stretches, read in odd pieces.
        let (g, gl) = MasterKey::from_seed(6).gear_tables();
        let c = Chunker::new(ChunkerParams::default(), g, gl);
        let mut data = vec![0u8; 3 * WINDOW + 777];
        for (i, part) in data.chunks_mut(3 << 20).enumerate() {
            if i % 3 != 1 {
                blake3::Hasher::new_derive_key("cairn stream test")
                    .update(&i.to_le_bytes())
                    .finalize_xof()
                    .fill(part);
            }
        }
        let whole: Vec<Vec<u8>> = c.chunks(&data).map(|r| data[r].to_vec()).collect();
        let mut streamed = Vec::new();
        let reader = std::io::BufReader::with_capacity(100_003, &data[..]);
        for_each_window::<_, std::io::Error>(reader, &c, None, |buf, rs| {
            streamed.extend(rs.into_iter().map(|r| buf[r].to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(streamed.len(), whole.len());
        assert!(
            streamed == whole,
            "windowed chunks differ from whole-buffer chunks"
        );
        let mut empty_calls = 0;
        for_each_window::<_, std::io::Error>(&[][..], &c, Some(0), |_, _| {
            empty_calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(empty_calls, 0);
    }
}
