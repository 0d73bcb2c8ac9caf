# Side monitor (H10): each second, vLLM's worker's /proc schedstat (main thread and all threads:
# ns on a CPU, ns runnable-waiting, slices) and /proc/stat per-core ticks (user nice system idle
# iowait irq softirq steal), to see who else ran on the worker's core and what the host stole.
import glob, re, sys, time, os
d = sys.argv[1]
out = open(sys.argv[2], "a")
while True:
    logs = sorted(glob.glob(f"{d}/logs/serve-*.log"), key=os.path.getmtime)
    tag = pid = ""; r = w = n = mr = mw = 0
    if logs:
        tag = logs[-1].rsplit("serve-", 1)[1][:-4]
        m = re.search(r"\(Worker pid=(\d+)\)", open(logs[-1], errors="replace").read())
        if m:
            pid = m.group(1)
            for f in glob.glob(f"/proc/{pid}/task/*/schedstat"):
                try:
                    a = [int(x) for x in open(f).read().split()]
                except (OSError, ValueError):
                    continue
                r += a[0]; w += a[1]; n += a[2]
                if f.split("/")[4] == pid:
                    mr, mw = a[0], a[1]
    cpus = {l.split()[0]: l.split()[1:9] for l in open("/proc/stat") if l.startswith("cpu") and l[3].isdigit()}
    c0, c1 = ",".join(cpus["cpu0"]), ",".join(cpus["cpu1"])
    out.write(f"{time.time():.3f}\t{tag}\t{pid}\t{r}\t{w}\t{n}\t{mr}\t{mw}\t{c0}\t{c1}\t{open('/proc/loadavg').read().split()[0]}\n")
    out.flush()
    time.sleep(1)
