# lib.sh — what the mpi suite's scripts share (sourced): their arguments, the skip (77) when
# krongrad was built without MPI or mpirun is missing, mpirun's settings for ranks on this
# machine, a scratch directory removed on exit, and the tiny run every case trains.
# Arguments: KRONGRAD MPI_CLOSE FIXTURES yes|no (MPI in the build).
K=$1 CLOSE=$2 FX=$3
[ "$4" = yes ] || { echo "krongrad was built without MPI: skipped"; exit 77; }
command -v mpirun >/dev/null 2>&1 || { echo "no mpirun (apt-get install openmpi-bin): skipped"; exit 77; }
# CI runs as root; Open MPI refuses root unless told.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# More ranks than cores on a CI machine, unbound, so each rank sees every core as one process
# would; shared memory between them, copied through the segment (the kernel's cross-process
# copy needs a ptrace permission containers often deny).
MPIRUN="mpirun --oversubscribe --bind-to none --mca btl self,vader,tcp
        --mca btl_vader_single_copy_mechanism none"
d=$(mktemp -d) && [ -n "$d" ] || exit 1
trap 'rm -rf "$d"' EXIT
# The tiny Llama fixture on the 4-item plain task.
RUN="--model $FX/models/llama --task plain --data $FX/tasks/plain/plain.jsonl --lr 1e-2"

# fail MESSAGE: say what failed, show the logs of the scratch directory, exit 1.
fail() {
  echo "FAILED: $1"
  for f in "$d"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done
  exit 1
}

# same A B: the adapters and the metrics of runs A and B agree within 1e-6.
same() {
  "$CLOSE" 1e-6 "$d/$1/adapter_model.safetensors" "$d/$2/adapter_model.safetensors" ||
    fail "the adapters of $1 and $2 differ"
  "$CLOSE" 1e-6 --metrics "$d/$1/metrics.jsonl" "$d/$2/metrics.jsonl" ||
    fail "the loss curves of $1 and $2 differ"
}
