//! Sequential: always the lowest-numbered piece not yet requested, the naive VoD policy.

use super::{PeerView, PickView, PiecePicker};

pub struct Sequential;

impl PiecePicker for Sequential {
    fn name(&self) -> &'static str {
        "sequential"
    }

    fn next(&mut self, view: &PickView<'_>, peer: &PeerView<'_>) -> Option<u32> {
        let peer = peer.has;
        peer.iter_ones().find(|&i| view.requestable(i, peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PieceStatus::*;
    use crate::wire::Bitfield;

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
        assert_eq!(Sequential.next(&view, &PeerView::of(&peer)), Some(2));
        peer.clear(2);
        assert_eq!(Sequential.next(&view, &PeerView::of(&peer)), Some(3));
    }
}
