//! The network flags refused where they cannot be honoured. The timed
//! tests of `--network-rtt` are in tests/network_timing, a binary of their own.

use crate::bad_input::refused;

#[test]
fn network_loss_is_refused_saying_why() {
    refused(
        &[
            "run",
            "--workload",
            "sleep",
            "--network-rtt",
            "2ms",
            "--network-loss",
            "1%",
        ],
        "--network-loss 1%: not offered; TCP retransmits",
    );
    refused(
        &["run", "--workload", "sleep", "--network-rtt", "2"],
        "has no unit: write 2ms",
    );
    refused(
        &["run", "--workload", "sleep", "--network-jitter", "1ms"],
        "--network-jitter varies a delay: give the delay too",
    );
}
