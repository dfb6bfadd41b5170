#!/bin/sh
# across_namespaces.sh — two "hosts" on one machine: two network namespaces joined by a veth
# pair (10.213.0.1 and .2, addresses on the pair only), mpirun in the first starting the second
# rank's daemon in the second (a launch agent in place of ssh), the ranks talking over Open MPI's
# TCP transport alone. The 2-rank job trains what 1 rank trains. The script makes the
# namespaces and removes them on exit. Skipped (77) when not root or without `ip netns`.
. "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "not root: skipped"; exit 77; }
a=kgmpi$$a b=kgmpi$$b
trap 'ip netns del $a 2>/dev/null; ip netns del $b 2>/dev/null; rm -rf "$d"' EXIT
ip netns add $a 2>/dev/null || { echo "ip netns unavailable: skipped"; exit 77; }
ip netns add $b || fail "ip netns add"
# The pair's ends move into the namespaces (and go with them); lo up too, for the local
# connection each rank makes to its launcher (PMIx).
ip link add ${a}v type veth peer name ${b}v &&
  ip link set ${a}v netns $a && ip link set ${b}v netns $b &&
  ip -n $a addr add 10.213.0.1/24 dev ${a}v && ip -n $b addr add 10.213.0.2/24 dev ${b}v &&
  ip -n $a link set ${a}v up && ip -n $b link set ${b}v up &&
  ip -n $a link set lo up && ip -n $b link set lo up ||
  { echo "no veth pair could be made: skipped"; exit 77; }
# mpirun runs this as `agent HOST COMMAND...` where it would run ssh.
cat >"$d/agent.sh" <<AGENT
#!/bin/sh
host=\$1; shift
[ "\$host" = 10.213.0.2 ] && ns=$b || ns=$a
exec ip netns exec \$ns sh -c "\$*"
AGENT
chmod +x "$d/agent.sh"
T="$RUN --backend cpu --steps 3 --batch 2 --accumulate 2"
"$K" train $T --out "$d/one" >"$d/one.log" 2>&1 || fail "1 rank"
timeout -k 5 60 ip netns exec $a mpirun --host 10.213.0.1:1,10.213.0.2:1 -np 2 --bind-to none \
  --mca plm_rsh_agent "$d/agent.sh" --mca oob_tcp_if_include 10.213.0.0/24 \
  --mca btl self,tcp --mca btl_tcp_if_include 10.213.0.0/24 \
  "$K" train $T --out "$d/two" >"$d/two.log" 2>&1 || fail "2 ranks over TCP"
same one two
# The gradients crossed the pair: 3 steps of 3,504 floats each way, and more.
sent=$(cat /sys/class/net/${a}v/statistics/tx_bytes 2>/dev/null ||
       ip netns exec $a cat /sys/class/net/${a}v/statistics/tx_bytes)
[ "$sent" -gt 42000 ] || fail "only $sent bytes crossed the veth pair"
echo "2 ranks in 2 namespaces over TCP = 1 rank ($sent bytes sent by the first)"
