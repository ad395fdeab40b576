//! Sequential: always the lowest-numbered piece not yet requested, the naive VoD policy.

use super::{PickView, PiecePicker};
use crate::wire::Bitfield;

pub struct Sequential;

impl PiecePicker for Sequential {
    fn name(&self) -> &'static str {
        "sequential"
    }

    fn next(&mut self, view: &PickView<'_>, peer: &Bitfield) -> Option<u32> {
        peer.iter_ones().find(|&i| view.requestable(i, peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PieceStatus::*;

    #[test]
    fn lowest_requestable_index() {
        let status = [Have, Requested, Missing, Partial];
        let view = PickView {
            status: &status,
            availability: &[1; 4],
            partials: &[1, 3],
            playback: None,
        };
        let mut peer = Bitfield::full(4);
        assert_eq!(Sequential.next(&view, &peer), Some(2));
        peer.clear(2);
        assert_eq!(Sequential.next(&view, &peer), Some(3));
    }
}
