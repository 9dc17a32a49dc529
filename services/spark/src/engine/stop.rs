//! Streaming text with stop sequences: a piece of text is released only once it can no longer
//! turn out to be the start of a stop sequence, so the streamed pieces always concatenate to
//! exactly the final text (which ends before the stop sequence).

/// Decides what of the generated text may be streamed.
#[derive(Debug, Default)]
pub struct StopScanner {
    stops: Vec<String>,
    released: usize,
}

/// What the scanner says after new text.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// Stream this (possibly empty) piece and go on.
    Release(String),
    /// A stop sequence appeared: stream this last piece; the final text is `text[..end]`.
    Stopped { last: String, end: usize },
}

impl StopScanner {
    pub fn new(stops: &[String]) -> StopScanner {
        StopScanner {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            released: 0,
        }
    }

    /// `text` is everything generated so far (it only grows).
    pub fn scan(&mut self, text: &str) -> Scan {
        if let Some(end) = self
            .stops
            .iter()
            .filter_map(|s| text[self.released.min(text.len())..].find(s.as_str()))
            .min()
            .map(|i| i + self.released)
        {
            let last = text[self.released..end].to_string();
            self.released = end;
            return Scan::Stopped { last, end };
        }
        let hold = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&text[self.released..], s))
            .max()
            .unwrap_or(0);
        let mut upto = text.len() - hold;
        while !text.is_char_boundary(upto) {
            upto -= 1;
        }
        let piece = text[self.released..upto].to_string();
        self.released = upto;
        Scan::Release(piece)
    }

    /// At the end (no stop sequence appeared): whatever was held back.
    pub fn finish(&mut self, text: &str) -> String {
        let rest = text[self.released.min(text.len())..].to_string();
        self.released = text.len();
        rest
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `stop`.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n)
                && stop.is_char_boundary(n)
                && text.ends_with(&stop[..n])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], steps: &[&str]) -> (Vec<String>, String) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut s = StopScanner::new(&stops);
        let mut text = String::new();
        let mut pieces = Vec::new();
        for step in steps {
            text.push_str(step);
            match s.scan(&text) {
                Scan::Release(p) => pieces.push(p),
                Scan::Stopped { last, end } => {
                    pieces.push(last);
                    return (pieces, text[..end].to_string());
                }
            }
        }
        pieces.push(s.finish(&text));
        (pieces, text)
    }

    #[test]
    fn pieces_concatenate_to_the_text_before_the_stop_sequence() {
        let (pieces, text) = run(&["\n\n", "END"], &["Hello", " wor", "ld", "\n", "\nmore"]);
        assert_eq!(text, "Hello world");
        assert_eq!(pieces.concat(), text);
        // The lone "\n" was held back until it was known to start the stop sequence.
        assert!(!pieces.iter().any(|p| p.contains('\n')));
    }

    #[test]
    fn held_text_is_released_when_it_turns_out_not_to_stop() {
        let (pieces, text) = run(&["END"], &["The E", "N", "D", "ing"]);
        assert_eq!(text, "The ");
        assert_eq!(pieces.concat(), "The ");
        let (pieces, text) = run(&["END"], &["The E", "N", "ding"]);
        assert_eq!(text, "The ENding");
        assert_eq!(pieces.concat(), text);
    }

    #[test]
    fn no_stops_releases_everything_and_multibyte_text_is_safe() {
        let (pieces, text) = run(&[], &["é", "日本"]);
        assert_eq!(pieces.concat(), text);
        let (pieces, text) = run(&["日x"], &["a日", "本"]);
        assert_eq!(pieces.concat(), text);
    }
}
