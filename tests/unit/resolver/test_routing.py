"""Delegation routing, fed in process: no sockets, no event loop.

``drive`` plays the engine: it answers every referral the routing asks for from a table
of prefix handles (absent: the prefix handle does not exist) and records what was asked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from protocol import valuedata as vd
from protocol.errors import NotResponsible, RecursionLoop
from protocol.identifiers import NA_PREFIX, parse_handle, prefix_handle
from protocol.records import HandleRecord, HandleValue
from resolver.delegation.routing import (
    LOCAL,
    MAX_WALK,
    NO_PREFIX,
    UNREGISTERED,
    Decision,
    NeedReferral,
    NeedService,
    Referral,
    Referrals,
    Route,
    Routing,
    ThisNode,
    referral_of,
)
from resolver.delegation.sites import in_order

ME = ("127.0.0.1", 8000)
SECONDARY = ThisNode("88.118", recursion=True, upstream=True, advertised=ME)
TOP = ThisNode("88", recursion=False, upstream=False, advertised=ME)


def server(n: int, port: int, protocol: str = "HTTP", address: str = "127.0.0.1") -> vd.Server:
    return vd.Server(n, address, b"", (vd.Interface(protocol, port),))


def sites(*servers: vd.Server) -> tuple[vd.Site, ...]:
    return (vd.Site(servers),)


ELSEWHERE = sites(server(1, 9001), server(2, 9002), server(3, 9003))
MYSELF = sites(server(1, ME[1]))


def nothing_known(zone: str) -> Referral | None:
    return None


def drive(
    text: str, node: ThisNode, prefixes: Mapping[str, Referral], known: Callable[[str], Referral | None] = nothing_known
) -> tuple[Decision, list[NeedReferral | NeedService]]:
    """Run the routing of ``text`` to its decision, answering from ``prefixes``; what it asked, in order."""
    routing = Routing(parse_handle(text), node, known)
    asked: list[NeedReferral | NeedService] = []
    while True:
        step = routing.next()
        if not isinstance(step, NeedReferral | NeedService):
            return step, asked
        assert len(asked) <= 2 * MAX_WALK, "the routing does not end"
        asked.append(step)
        routing.referred(step.zone, prefixes.get(step.zone, NO_PREFIX))


def zones(asked: list[NeedReferral | NeedService]) -> list[str]:
    return [step.zone for step in asked]


# This node's store ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["88.118/X", "0.NA/88.118", "0.NA/88.118.5.6"])
def test_what_no_prefix_handle_can_send_elsewhere_is_read_here_without_a_referral(text: str) -> None:
    decision, asked = drive(text, SECONDARY, {"88.118.5": Referral(True, ELSEWHERE)})
    assert (decision, asked) == (LOCAL, [])


def test_under_the_node_prefix_without_any_prefix_handle_the_handle_is_held_here() -> None:
    decision, asked = drive("88.118.5.6/X", SECONDARY, {})
    assert decision is LOCAL
    assert zones(asked) == ["88.118.5.6", "88.118.5"]  # nearest first, never the node prefix itself


@pytest.mark.parametrize("referral", [Referral(True), Referral(True, MYSELF)], ids=["no-site", "this-node"])
def test_an_enterprise_prefix_without_a_site_or_naming_this_node_is_held_here(referral: Referral) -> None:
    decision, asked = drive("88.118.5.6/X", SECONDARY, {"88.118.5": referral, "88.118.5.6": NO_PREFIX})
    assert decision is LOCAL
    assert zones(asked) == ["88.118.5.6", "88.118.5"]


# Delegated down -------------------------------------------------------------------------------


def test_a_prefix_delegated_down_is_routed_to_its_servers_in_hash_order_with_recursion() -> None:
    handle = parse_handle("88.118.5.6/ITEM")
    decision, asked = drive(handle.text, SECONDARY, {"88.118.5": Referral(True, ELSEWHERE)})
    assert decision == Route("88.118.5", in_order(ELSEWHERE, handle))
    assert sorted(s.server_id for s in decision.servers) == [1, 2, 3]  # every server, the hashed one first
    assert zones(asked) == ["88.118.5.6", "88.118.5"]


def test_the_nearest_prefix_handle_decides_even_when_a_farther_one_delegates() -> None:
    prefixes = {"88.118.5.6": Referral(True), "88.118.5": Referral(True, ELSEWHERE)}
    decision, asked = drive("88.118.5.6/X", SECONDARY, prefixes)
    assert (decision, zones(asked)) == (LOCAL, ["88.118.5.6"])


def test_without_recursion_a_prefix_delegated_down_is_refused_naming_its_servers() -> None:
    with pytest.raises(NotResponsible) as refused:
        drive("88.200.1/AT-TOP", TOP, {"88.200.1": Referral(True, sites(server(1, 9001)))})
    assert refused.value.message == "prefix 88.200.1 is delegated to http://127.0.0.1:9001"
    assert refused.value.handle == "88.200.1/AT-TOP"


def test_without_recursion_servers_without_http_are_named_as_such() -> None:
    with pytest.raises(NotResponsible, match="delegated to servers without an HTTP interface"):
        drive("88.200.1/X", TOP, {"88.200.1": Referral(True, sites(server(1, 2641, "TCP")))})


# Elsewhere: walking up ----------------------------------------------------------------------


def test_elsewhere_the_nearest_existing_prefix_handle_designates_the_servers() -> None:
    handle = parse_handle("88.200.1.2/X")
    decision, asked = drive(handle.text, SECONDARY, {"88.200": Referral(True, ELSEWHERE)})
    assert zones(asked) == ["88.200.1.2", "88.200.1", "88.200"]
    assert decision == Route("88.200", in_order(ELSEWHERE, handle))


def test_a_route_keeps_servers_of_every_transport_for_the_engine_to_choose() -> None:
    binary = sites(server(1, 2641, "TCP"), server(2, 2641, "UDP"))
    decision, _ = drive("88.800/X", SECONDARY, {"88.800": Referral(True, binary)})
    assert isinstance(decision, Route)
    assert {i.protocol for s in decision.servers for i in s.interfaces} == {"TCP", "UDP"}


def test_elsewhere_a_prefix_handle_without_sites_leaves_the_prefix_to_the_top_level_node() -> None:
    decision, _ = drive("88.200.1/X", SECONDARY, {"88.200.1": Referral(True)})
    assert decision == Route("88.200.1", (), upstream=True)


def test_a_prefix_handle_of_another_node_is_asked_of_the_top_level_node_without_a_referral() -> None:
    decision, asked = drive("0.NA/88.200.1", SECONDARY, {})
    assert (decision, asked) == (Route(NA_PREFIX, (), upstream=True), [])


def test_no_prefix_handle_anywhere_up_is_unregistered() -> None:
    decision, asked = drive("99.1.2/X", SECONDARY, {})
    assert decision is UNREGISTERED
    assert zones(asked) == ["99.1.2", "99.1", "99"]


def test_a_referral_naming_this_node_for_a_prefix_it_does_not_serve_is_a_loop() -> None:
    with pytest.raises(RecursionLoop) as loop:
        drive("88.300/X", SECONDARY, {"88.300": Referral(True, MYSELF)})
    assert loop.value.message == "the referral for prefix 88.300 names this node, which does not serve it"


@pytest.mark.parametrize(
    ("node", "why"),
    [
        (ThisNode("88.118", recursion=False, upstream=True), "recursion is off"),
        (ThisNode("88.118", recursion=True, upstream=False), "it has no upstream to ask"),
    ],
)
def test_elsewhere_a_node_that_cannot_recurse_refuses_before_asking_anything(node: ThisNode, why: str) -> None:
    with pytest.raises(NotResponsible) as refused:
        drive("88.200/X", node, {"88.200": Referral(True, ELSEWHERE)})
    assert refused.value.message == f"this node serves prefix 88.118 and {why}; 88.200/X is not under it"


# HS_SERV ------------------------------------------------------------------------------------

SERVICE = prefix_handle("88.400.SERVICE")


def test_a_prefix_handle_naming_a_service_handle_takes_the_service_sites() -> None:
    handle = parse_handle("88.400/ITEM")
    prefixes = {"88.400": Referral(True, (), (SERVICE,)), "88.400.SERVICE": Referral(True, ELSEWHERE)}
    decision, asked = drive(handle.text, SECONDARY, prefixes)
    assert asked == [NeedReferral("88.400"), NeedService(SERVICE, "88.400")]
    assert decision == Route("88.400", in_order(ELSEWHERE, handle))


def test_a_missing_service_handle_is_passed_over_for_the_next_one() -> None:
    second = prefix_handle("88.400.OTHER")
    prefixes = {"88.400": Referral(True, (), (SERVICE, second)), "88.400.OTHER": Referral(True, ELSEWHERE)}
    decision, asked = drive("88.400/X", SECONDARY, prefixes)
    assert asked[1:] == [NeedService(SERVICE, "88.400"), NeedService(second, "88.400")]
    assert isinstance(decision, Route) and decision.zone == "88.400" and decision.servers


def test_service_handles_are_followed_one_level_only() -> None:
    chained = prefix_handle("88.400.CHAINED")
    prefixes = {
        "88.400": Referral(True, (), (SERVICE,)),
        "88.400.SERVICE": Referral(True, (), (chained,)),
        "88.400.CHAINED": Referral(True, ELSEWHERE),
    }
    decision, asked = drive("88.400/X", SECONDARY, prefixes)
    assert decision == Route("88.400", (), upstream=True)  # a service without sites: no sites
    assert "88.400.CHAINED" not in zones(asked)


def test_under_the_node_prefix_a_service_handle_can_delegate_down() -> None:
    prefixes = {"88.118.5": Referral(True, (), (SERVICE,)), "88.400.SERVICE": Referral(True, ELSEWHERE)}
    decision, _ = drive("88.118.5/X", SECONDARY, prefixes)
    assert isinstance(decision, Route) and decision.zone == "88.118.5"
    no_service, _ = drive("88.118.5/X", SECONDARY, {"88.118.5": Referral(True, (), (SERVICE,))})
    assert no_service is LOCAL


# MAX_WALK -----------------------------------------------------------------------------------


def deep(top: str, levels: int) -> str:
    return ".".join([top, *(str(n) for n in range(levels))])


def test_elsewhere_at_most_max_walk_levels_are_looked_at() -> None:
    zone = deep("99", MAX_WALK + 4)
    decision, asked = drive(f"{zone}/X", SECONDARY, {"99": Referral(True, ELSEWHERE)})
    assert decision is UNREGISTERED  # 99 itself is too far up to be looked at
    assert len(asked) == MAX_WALK and asked[0] == NeedReferral(zone)


def test_under_the_node_prefix_at_most_max_walk_levels_are_looked_at() -> None:
    zone = deep("88.118", MAX_WALK + 4)
    far = ".".join(zone.split(".")[:3])
    decision, asked = drive(f"{zone}/X", SECONDARY, {far: Referral(True, ELSEWHERE)})
    assert decision is LOCAL
    assert len(asked) == MAX_WALK and far not in zones(asked)


# Run on known referrals alone (the engine's synchronous path) ---------------------------------


class Known:
    """The referrals a worker holds, counting how often each zone is looked up."""

    def __init__(self, held: Mapping[str, Referral]) -> None:
        self.held = held
        self.lookups: list[str] = []

    def __call__(self, zone: str) -> Referral | None:
        self.lookups.append(zone)
        return self.held.get(zone)


def test_known_referrals_decide_without_asking_anything() -> None:
    known = Known({"88.118.5.6": NO_PREFIX, "88.118.5": Referral(True)})
    routing = Routing(parse_handle("88.118.5.6/X"), SECONDARY, known)
    assert routing.next() is LOCAL
    assert routing.hits == 2
    assert routing.next() is LOCAL and known.lookups == ["88.118.5.6", "88.118.5"]  # each zone asked once


def test_a_known_referral_naming_a_service_decides_with_the_known_service() -> None:
    known = Known({"88.118.5": Referral(True, (), (SERVICE,)), "88.400.SERVICE": Referral(True, MYSELF)})
    routing = Routing(parse_handle("88.118.5/X"), SECONDARY, known)
    assert routing.next() is LOCAL and routing.hits == 2


def test_what_is_not_known_is_asked_for_and_the_answer_is_used() -> None:
    known = Known({"88.118.5.6": NO_PREFIX})
    routing = Routing(parse_handle("88.118.5.6/X"), SECONDARY, known)
    assert routing.next() == NeedReferral("88.118.5")
    assert routing.next() == NeedReferral("88.118.5")  # asking again changes nothing
    routing.referred("88.118.5", Referral(True, ELSEWHERE))
    decision = routing.next()
    assert isinstance(decision, Route) and decision.zone == "88.118.5"
    assert known.lookups == ["88.118.5.6", "88.118.5"] and routing.hits == 1


# Reading prefix handles ---------------------------------------------------------------------


def prefix_record(*values: HandleValue) -> HandleRecord:
    return HandleRecord("0.NA/88.400", values)


def test_a_missing_prefix_handle_refers_nowhere() -> None:
    assert referral_of(None) == NO_PREFIX == Referral(False, (), ())


def test_a_prefix_handle_with_sites_refers_to_them_and_ignores_hs_serv() -> None:
    site = vd.Site((server(1, 9001),))
    record = prefix_record(HandleValue(1, "HS_SITE", vd.encode_site(site)), HandleValue(2, "HS_SERV", b"0.NA/88.9"))
    assert referral_of(record) == Referral(True, (site,), ())


def test_hs_serv_values_naming_prefix_handles_are_kept_others_skipped(caplog: pytest.LogCaptureFixture) -> None:
    record = prefix_record(
        HandleValue(1, "HS_SERV", b"0.na/88.400.service"),
        HandleValue(2, "HS_SERV", b"88.400/NOT-A-PREFIX-HANDLE"),
        HandleValue(3, "HS_SERV", b"\xff\xfe"),
        HandleValue(4, "HS_SERV", b"no slash"),
        HandleValue(5, "HS_SERV", b"0.NA/88.401"),
    )
    assert referral_of(record) == Referral(True, (), (SERVICE, prefix_handle("88.401")))
    assert "HS_SERV names 88.400/NOT-A-PREFIX-HANDLE, not a prefix handle" in caplog.text


# Referrals held by a worker -----------------------------------------------------------------


def words(n: int = 4) -> memoryview:
    return memoryview(bytearray(8 * n)).cast("Q")


def test_a_held_referral_is_fresh_until_it_expires_then_stale_until_its_window_ends() -> None:
    held = Referrals(words())
    held.keep("88.200", Referral(True), expires=10.0, stale_until=20.0, slot=1, gen=0)
    assert held.fresh("88.200", 9.9) == Referral(True) == held.stale("88.200", 19.9)
    assert held.fresh("88.200", 10.0) is None
    assert held.stale("88.200", 20.0) is None
    assert held.fresh("88.201", 0.0) is None and held.stale("88.201", 0.0) is None


def test_a_write_to_the_prefix_handle_retires_its_referral_at_once() -> None:
    generation = words()
    held = Referrals(generation)
    held.keep("88.200", Referral(True), expires=10.0, stale_until=20.0, slot=2, gen=0)
    generation[2] += 1
    assert held.fresh("88.200", 0.0) is None and held.stale("88.200", 0.0) is None


def test_the_oldest_referral_makes_room_for_a_new_zone() -> None:
    held = Referrals(words(), limit=2)
    for zone in ("88.1", "88.2", "88.2", "88.3"):
        held.keep(zone, Referral(True), expires=10.0, stale_until=20.0, slot=0, gen=0)
    assert len(held) == 2
    assert held.fresh("88.1", 0.0) is None and held.fresh("88.3", 0.0) is not None
