//! The control queue through the worker core.

use super::*;

/// Posts `cmd` and an ack byte on queue `q`, serves it, returns the ack.
fn command(g: &mut Guest, core: &mut Core, q: u16, cmd: &[u8]) -> u8 {
    g.write(BUF, cmd);
    g.write(BUF + 0x1000, &[0xaa]);
    g.post(q, &[(BUF, cmd.len() as u32, R), (BUF + 0x1000, 1, W)]);
    core.serve(Target::Ctrl);
    g.read(BUF + 0x1000, 1)[0]
}

#[test]
fn test_ctrl_command_whose_ack_is_outside_memory_is_not_carried_out() {
    let (mut g, mut core, _peer, _io) = one_pair(BASE);
    g.write(BUF, &[0, 0, 0]);

    g.post(2, &[(BUF, 3, R), (RAM + 0x1000, 1, W)]);
    core.serve(Target::Ctrl);

    assert!(core.state.filter.promisc, "promiscuous mode left on");
    assert_eq!(g.used(2), vec![(0, 0)]);
}

#[test]
fn test_ctrl_mq_pairs_set_two_is_ok_and_enables_second_backend() {
    let (mut g, mut core, _peers, ios) = two_pairs(BASE);

    let ack = command(&mut g, &mut core, 4, &[4, 0, 2, 0]);

    assert_eq!(ack, 0);
    assert_eq!(core.state.active_pairs, 2);
    assert_eq!(ios[1].enabled.lock().unwrap().last(), Some(&true));
    assert!(core.wants_frames(1));
    assert_eq!(g.used(4), vec![(0, 1)]);
}

#[test]
fn test_ctrl_activation_enables_only_first_pair() {
    let (_g, core, _peers, ios) = two_pairs(BASE);

    let e0 = ios[0].enabled.lock().unwrap().clone();
    let e1 = ios[1].enabled.lock().unwrap().clone();

    assert_eq!(e0, vec![true]);
    assert_eq!(e1, vec![false]);
    assert!(!core.wants_frames(1));
}

#[test]
fn test_ctrl_mq_pairs_set_three_of_two_is_err() {
    let (mut g, mut core, _peers, _ios) = two_pairs(BASE);

    let ack = command(&mut g, &mut core, 4, &[4, 0, 3, 0]);

    assert_eq!(ack, 1);
    assert_eq!(core.state.active_pairs, 1);
}

#[test]
fn test_ctrl_mq_pairs_set_zero_is_err() {
    let (mut g, mut core, _peers, _ios) = two_pairs(BASE);

    let ack = command(&mut g, &mut core, 4, &[4, 0, 0, 0]);

    assert_eq!(ack, 1);
}

#[test]
fn test_ctrl_mq_pairs_set_without_mq_is_err() {
    let (mut g, mut core, _peer, _io) = one_pair(BASE);

    let ack = command(&mut g, &mut core, 2, &[4, 0, 1, 0]);

    assert_eq!(ack, 1);
}

#[test]
fn test_ctrl_promisc_off_is_ok_and_recorded() {
    let (mut g, mut core, _peer, _io) = one_pair(BASE);

    let ack = command(&mut g, &mut core, 2, &[0, 0, 0]);

    assert_eq!(ack, 0);
    assert!(!core.state.filter.promisc);
}

#[test]
fn test_ctrl_mac_table_set_is_ok_and_recorded() {
    let (mut g, mut core, _peer, _io) = one_pair(BASE);
    let mut cmd = vec![1, 0, 1, 0, 0, 0];
    cmd.extend_from_slice(&[2, 0, 0, 0, 0, 7]);
    cmd.extend_from_slice(&[0, 0, 0, 0]);

    let ack = command(&mut g, &mut core, 2, &cmd);

    assert_eq!(ack, 0);
    assert_eq!(core.state.filter.unicast, vec![[2, 0, 0, 0, 0, 7]]);
}

#[test]
fn test_ctrl_unknown_class_is_err() {
    let (mut g, mut core, _peer, _io) = one_pair(BASE);

    let ack = command(&mut g, &mut core, 2, &[9, 0, 0]);

    assert_eq!(ack, 1);
}

#[test]
fn test_ctrl_rx_extra_command_not_offered_is_err() {
    let (mut g, mut core, _peer, _io) = one_pair(BASE);

    let ack = command(&mut g, &mut core, 2, &[0, 5, 1]);

    assert_eq!(ack, 1);
}
