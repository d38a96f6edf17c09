//! Splitting the hypervisor's console stream into plain text and defmt
//! frames. On the wire a frame is `0xFF`, its rzcobs bytes, then `0x00`;
//! everything else is text (text never contains `0xFF`).

/// The text of one piece: a defmt frame decoded to `[hyp] ...` lines with
/// `decoder` (the kernel ELF's table), text with `\r` dropped.
pub fn render(piece: Piece, decoder: Option<&mut Box<dyn defmt_decoder::StreamDecoder + Send + Sync + '_>>) -> String {
    match piece {
        Piece::Text(t) => String::from_utf8_lossy(&t).replace('\r', ""),
        Piece::Frame(f) => match decoder {
            Some(d) => {
                d.received(&f);
                let mut s = String::new();
                while let Ok(frame) = d.decode() {
                    s += &format!("[hyp] {}\n", frame.display(false));
                }
                s
            }
            None => "[hyp] <defmt frame, no table>\n".into(),
        },
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Text(Vec<u8>),
    /// One complete rzcobs frame, including its `0x00` terminator.
    Frame(Vec<u8>),
}

#[derive(Default)]
pub struct Demux {
    in_frame: bool,
    frame: Vec<u8>,
}

impl Demux {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut text = Vec::new();
        for &b in bytes {
            if self.in_frame {
                if b == 0 && self.frame.is_empty() {
                    continue; // the encoder's leading separator: an empty frame
                }
                self.frame.push(b);
                if b == 0 {
                    self.in_frame = false;
                    out.push(Piece::Frame(std::mem::take(&mut self.frame)));
                }
            } else if b == 0xff {
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                self.in_frame = true;
            } else {
                text.push(b);
            }
        }
        if !text.is_empty() {
            out.push(Piece::Text(text));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_text_and_frames_across_pushes() {
        let mut d = Demux::default();
        let a = d.push(b"hello \xff\x01\x02");
        assert_eq!(a, vec![Piece::Text(b"hello ".to_vec())]);
        let b = d.push(b"\x03\x00world\n");
        assert_eq!(b, vec![Piece::Frame(vec![1, 2, 3, 0]), Piece::Text(b"world\n".to_vec())]);
        // defmt's first frame starts with a separator byte.
        assert_eq!(d.push(b"\xff\x00\x07\x00"), vec![Piece::Frame(vec![7, 0])]);
    }
}
