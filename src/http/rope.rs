//! JSON (or any body) held as the parts it was assembled from, in order: a watch event of a
//! big image stream is thousands of kept per-tag parts, sent without first being copied into
//! one buffer per event or per watcher.

use bytes::Bytes;

#[derive(Debug, Default, Clone)]
pub struct Rope {
    parts: Vec<Bytes>,
    len: usize,
}

impl Rope {
    pub fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.len += part.len();
            self.parts.push(part);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole body in one buffer (for the rare reader that must parse it).
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [one] => one.clone(),
            parts => {
                let mut v = Vec::with_capacity(self.len);
                for p in parts {
                    v.extend_from_slice(p);
                }
                Bytes::from(v)
            }
        }
    }

    /// The chunk that starts at part `*next`: that part alone when it is at least `chunk` bytes,
    /// else it and the parts after it copied together up to about `chunk` bytes. Advances
    /// `*next`; `None` at the end.
    pub fn chunk(&self, next: &mut usize, chunk: usize) -> Option<Bytes> {
        let first = self.parts.get(*next)?;
        *next += 1;
        if first.len() >= chunk {
            return Some(first.clone());
        }
        let mut v = Vec::with_capacity(chunk.min(self.len));
        v.extend_from_slice(first);
        while let Some(p) = self.parts.get(*next) {
            if v.len() + p.len() > chunk {
                break;
            }
            v.extend_from_slice(p);
            *next += 1;
        }
        Some(Bytes::from(v))
    }
}

impl From<Bytes> for Rope {
    fn from(b: Bytes) -> Self {
        let mut r = Rope::default();
        r.push(b);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_the_parts_in_order_and_stay_near_the_chunk_size() {
        let mut r = Rope::default();
        for i in 0..1000u32 {
            r.push(Bytes::from(format!("<{i}>").repeat((i % 7) as usize)));
        }
        r.push(Bytes::from(vec![b'x'; 100]));
        let whole = r.to_bytes();
        assert_eq!(whole.len(), r.len());
        let (mut next, mut got) = (0, Vec::new());
        while let Some(c) = r.chunk(&mut next, 64) {
            assert!(c.len() <= 100);
            got.extend_from_slice(&c);
        }
        assert_eq!(got, whole);
        assert!(Rope::default().chunk(&mut 0, 64).is_none());
    }
}
