#!/usr/bin/env bash
# Network slots (src/network): two slots side by side (namespace, veth pair and addresses,
# tap0, route, NAT table, forwarding), the DNAT path from the host to 169.254.0.21:49983 inside
# a slot (a listener in the namespace stands in for the guest), removal on exit, and dead
# owners: a kill -9'd holder's slot is removed by the next start (cleanup or acquire), while a
# live holder's slot is never touched. Ends by checking nothing of ours is left.
. "$(dirname "$0")/lib.sh"
need ip nft busybox
[ "$(id -u)" = 0 ] || { echo "SKIP network_slots: needs root"; exit 77; }
H=$ROOT/build/tests/helpers/network_ctl
[ -x "$H" ] || { echo "SKIP network_slots: helpers not built (make tests)"; exit 77; }
D=$T/net
HOLDERS=()
kill_holders() { local p; for p in "${HOLDERS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; "$H" -dir "$D" cleanup; }
on_exit kill_holders

# hold NAME N: starts a holder of N slots; sets HPID; waits for READY
hold() {
  local name=$1 n=$2 i
  "$H" -dir "$D" hold "$n" >"$T/$name.out" 2>"$T/$name.err" &
  HPID=$!
  HOLDERS+=("$HPID")
  for i in $(seq 100); do grep -q '^READY' "$T/$name.out" && return 0; kill -0 $HPID 2>/dev/null || break; sleep 0.05; done
  cat "$T/$name.err" >&2
  return 1
}
slot_field() { awk -v n="$2" '$1=="SLOT"{i++; if(i==n) print}' "$T/$1.out" | cut -d' ' -f"$3"; }
ns_exists() { ip netns list | awk '{print $1}' | grep -qx "ns-$1"; }
link_exists() { ip link show "$1" >/dev/null 2>&1; }

hold a 2 || { fail network_hold "holder did not get ready"; finish; }
A=$HPID
grep READY "$T/a.out"
i1=$(slot_field a 1 2); i2=$(slot_field a 2 2); h1=$(slot_field a 1 4); v1=$(slot_field a 1 5); p1=$(slot_field a 1 6)
[ -n "$i1" ] && [ -n "$i2" ] && [ "$i1" != "$i2" ] && pass network_two_slots || fail network_two_slots "$(cat "$T/a.out")"

ok=1
for i in $i1 $i2; do
  ns_exists "$i" || { ok=0; echo "no ns-$i"; }
  link_exists "veth-$i" || { ok=0; echo "no veth-$i"; }
  ip -n "ns-$i" -br addr show tap0 | grep -q '169.254.0.22/30' || { ok=0; echo "no tap0 address in ns-$i"; }
  ip -n "ns-$i" -d link show tap0 | grep -q 'tun type tap' || { ok=0; echo "tap0 of ns-$i is not a tap"; }
  ip -n "ns-$i" route | grep -q '^default via' || { ok=0; echo "no default route in ns-$i"; }
  [ "$(ip netns exec "ns-$i" cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || { ok=0; echo "no forwarding in ns-$i"; }
done
ip -br addr show "veth-$i1" | grep -q "$v1/31" || { ok=0; echo "veth-$i1 lacks $v1/31"; }
ip -n "ns-$i1" -br addr show eth0 | grep -q "$p1/31" || { ok=0; echo "eth0 of ns-$i1 lacks $p1/31"; }
ip route get "$h1" | grep -q "via $p1 dev veth-$i1" || { ok=0; echo "no route to $h1 via $p1"; }
rules=$(ip netns exec "ns-$i1" nft list table ip orch-slot 2>&1)
echo "$rules" | grep -q "ip daddr $h1 dnat to 169.254.0.21" || { ok=0; echo "no DNAT rule: $rules"; }
echo "$rules" | grep -q "ip saddr 169.254.0.21 snat to $h1" || { ok=0; echo "no SNAT rule: $rules"; }
[ $ok = 1 ] && pass network_slot_layout || fail network_slot_layout "see above"

# the host reaches <hostIP>:49983 -> 169.254.0.21:49983 in the namespace (a listener stands in
# for the guest's envd; 169.254.0.21 is put on the namespace's lo for that)
ip -n "ns-$i1" addr add 169.254.0.21/32 dev lo
ip netns exec "ns-$i1" timeout 10 busybox nc -l -p 49983 -e /bin/echo hello-from-slot >/dev/null 2>&1 &
LPID=$!
on_exit "kill -9 $LPID"
got=""
for i in $(seq 40); do
  got=$(timeout 2 busybox nc "$h1" 49983 </dev/null 2>/dev/null) && [ -n "$got" ] && break
  sleep 0.05
done
[ "$got" = hello-from-slot ] && pass network_dnat_to_guest_ip || fail network_dnat_to_guest_ip "got '$got'"
kill -9 $LPID 2>/dev/null; wait $LPID 2>/dev/null

# clean exit removes everything
kill -TERM $A; wait $A
gone=1
for i in $i1 $i2; do ns_exists "$i" && gone=0; link_exists "veth-$i" && gone=0; [ -e "$D/slot-$i.lock" ] && gone=0; done
grep -q RELEASED "$T/a.out" && [ $gone = 1 ] && pass network_release || fail network_release "leftovers of $i1/$i2"

# dead owners: b stays alive, c is kill -9'd; cleanup removes c's slot only
hold b 1 || { fail network_hold_b "holder b"; finish; }
B=$HPID; ib=$(slot_field b 1 2)
hold c 1 || { fail network_hold_c "holder c"; finish; }
C=$HPID; ic=$(slot_field c 1 2)
kill -9 $C; wait $C 2>/dev/null
ns_exists "$ic" && link_exists "veth-$ic" || fail network_kill9_leaves "kill -9 left nothing behind?"
out=$("$H" -dir "$D" cleanup)
if [ "$out" = "REMOVED 1" ] && ! ns_exists "$ic" && ! link_exists "veth-$ic" && [ ! -e "$D/slot-$ic.lock" ] &&
   ns_exists "$ib" && link_exists "veth-$ib"; then
  pass network_cleanup_dead_owner_only
else
  fail network_cleanup_dead_owner_only "cleanup said '$out'"
fi

# the next acquire also removes a dead owner's leftovers and reuses the index
hold d 1 || { fail network_hold_d "holder d"; finish; }
D1=$HPID; id=$(slot_field d 1 2)
kill -9 $D1; wait $D1 2>/dev/null
hold e 1 || { fail network_reacquire "holder e: $(cat "$T/e.err")"; finish; }
E=$HPID; ie=$(slot_field e 1 2)
[ "$ie" = "$id" ] && ns_exists "$ie" && pass network_reacquire_stale || fail network_reacquire_stale "got slot $ie, dead one was $id"
kill -TERM $B $E; wait $B $E

# outbound NAT: a host table per slot, removed with the slot
"$H" -dir "$D" -internet hold 1 >"$T/f.out" 2>"$T/f.err" &
F=$!; HOLDERS+=("$F")
for i in $(seq 100); do grep -q '^READY' "$T/f.out" && break; sleep 0.05; done
itf=$(slot_field f 1 2); htf=$(slot_field f 1 4)
nft list table ip "orch-slot-$itf" 2>/dev/null | grep -q "ip saddr $htf oifname != \"veth-$itf\" masquerade" && had=1 || had=0
kill -TERM $F; wait $F
if [ $had = 1 ] && ! nft list table ip "orch-slot-$itf" >/dev/null 2>&1; then pass network_internet_nat; else fail network_internet_nat "had=$had: $(cat "$T/f.err")"; fi

# acquire + release cost
"$H" -dir "$D" cycle 5 | sed 's/^/    /'

# nothing left: no namespace, veth, lock file of ours
left=""
for i in $i1 $i2 $ib $ic $id $itf; do ns_exists "$i" && left+=" ns-$i"; link_exists "veth-$i" && left+=" veth-$i"; done
[ -z "$(ls "$D" 2>/dev/null)" ] || left+=" locks:$(ls "$D")"
[ -z "$left" ] && pass network_no_leak || fail network_no_leak "$left"
finish
