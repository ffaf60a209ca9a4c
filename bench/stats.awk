# Aggregates the RESULT lines that bench/run-all collected (POSIX awk, mawk
# is enough).  Input lines:
#   RESULT cfg=<id> impl=<name> <metric>=<number|null> ... round=<r>
#   FAIL round=<r> cfg=<id> impl=<name> rc=<code> cmd=<...>
# Round 0 is the warm-up round and is dropped (except for the correctness
# counters, which count in every round).  Output, selected with -v out=:
#   json    the "results", "ratios", "checks" and "failures" arrays of
#           latest.json (the caller wraps them);
#   table   TSV: cfg metric impl median min max n ratio_median
#           ratio_nodata_median
#           (ratio_median = median over rounds of baton/impl,
#           ratio_nodata_median = the same for baton_nodata/impl; "-" for
#           Baton's own rows and where there is no such run)
# Per-round ratios are baton/peer and baton_nodata/peer from the same round
# (lower is better for every metric except events_per_s and req_per_s, where higher is).
# Baton's variants are the impls whose name starts with "baton" (baton:
# exact FreeBSD data; baton_nodata: NOTE_NODATA); every other impl is a peer.

function isnum(v) { return v ~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }

# sort a[1..n] numerically (insertion sort: n is the number of rounds)
function sortn(a, n,    i, j, t) {
	for (i = 2; i <= n; i++) {
		t = a[i]
		for (j = i - 1; j >= 1 && a[j] > t; j--)
			a[j + 1] = a[j]
		a[j + 1] = t
	}
}
function median(a, n) {
	if (n == 0) return "null"
	sortn(a, n)
	return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function jnum(v) { return isnum(v) ? sprintf("%.6g", v) : "null" }
function jstr(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }

# metrics that get a baton/peer ratio; counters that must stay zero
BEGIN {
	split("ns_per_event events_per_s rtt_ns add_ns cancel_ns fire_cpu_ns " \
	      "late_p99_us rss_per_timer_b fds_used instr_per_event " \
	      "req_per_s p99_us cpu_us_per_req rss_per_conn_b rss_idle_b", r, " ")
	for (i in r) ratio_metric[r[i]] = 1
	split("i1_violations dup_deliveries g1_violations errors failures bad_expiries", c, " ")
	for (i in c) check_metric[c[i]] = 1
	nfail = 0
}

$1 == "FAIL" {
	fail[++nfail] = $0
	next
}

$1 == "RESULT" {
	cfg = ""; impl = ""; round = -1
	for (i = 2; i <= NF; i++) {
		k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v)
		if (k == "cfg") cfg = v
		else if (k == "impl") impl = v
		else if (k == "round") round = v + 0
	}
	if (cfg == "" || impl == "") next
	if (!((cfg, impl) in seen_ci)) {
		seen_ci[cfg, impl] = 1
		impls[cfg] = impls[cfg] " " impl
	}
	if (!(cfg in seen_cfg)) { seen_cfg[cfg] = 1; cfgs[++ncfg] = cfg }
	for (i = 2; i <= NF; i++) {
		k = $i; sub(/=.*/, "", k); v = $i; sub(/^[^=]*=/, "", v)
		if (k == "cfg" || k == "impl" || k == "round") continue
		if (!((cfg, k) in seen_cm)) {
			seen_cm[cfg, k] = 1
			metrics[cfg] = metrics[cfg] " " k
		}
		if ((k in check_metric) && isnum(v)) {
			chk[cfg, impl, k] += v
			seen_chk[cfg, impl, k] = 1
		}
		if (round == 0 || !isnum(v)) continue
		n = ++cnt[cfg, impl, k]
		val[cfg, impl, k, n] = v + 0
		byround[cfg, impl, k, round] = v + 0
		rounds[cfg, round] = 1
		if (round > maxround) maxround = round
	}
}

END {
	nres = 0; nrat = 0; nchk = 0
	for (ci = 1; ci <= ncfg; ci++) {
		cfg = cfgs[ci]
		ni = split(impls[cfg], il, " ")
		nm = split(metrics[cfg], ml, " ")
		for (mi = 1; mi <= nm; mi++) {
			m = ml[mi]
			for (ii = 1; ii <= ni; ii++) {
				im = il[ii]
				n = cnt[cfg, im, m] + 0
				if (n == 0) continue
				for (j = 1; j <= n; j++) tmp[j] = val[cfg, im, m, j]
				med = median(tmp, n)
				lo = tmp[1]; hi = tmp[n]
				rmed = "-"; rnd = "-"
				if ((m in ratio_metric) && im !~ /^baton/) {
					for (bi = 1; bi <= 2; bi++) {
						bv = (bi == 1) ? "baton" : "baton_nodata"
						nr = 0
						for (rd = 1; rd <= maxround; rd++)
							if (((cfg, bv, m, rd) in byround) &&
							    ((cfg, im, m, rd) in byround) &&
							    byround[cfg, im, m, rd] != 0)
								rr[++nr] = byround[cfg, bv, m, rd] / byround[cfg, im, m, rd]
						if (nr == 0) continue
						x = median(rr, nr)
						if (bi == 1) rmed = x; else rnd = x
						ratio[++nrat] = sprintf("{\"cfg\":%s,\"metric\":%s,\"baton\":%s,\"peer\":%s,\"higher_is_better\":%s,\"median_ratio\":%s,\"min_ratio\":%s,\"max_ratio\":%s,\"rounds\":%d}",
							jstr(cfg), jstr(m), jstr(bv), jstr(im), (m == "events_per_s" || m == "req_per_s") ? "true" : "false",
							jnum(x), jnum(rr[1]), jnum(rr[nr]), nr)
					}
				}
				res[++nres] = sprintf("{\"cfg\":%s,\"impl\":%s,\"metric\":%s,\"median\":%s,\"min\":%s,\"max\":%s,\"rounds\":%d}",
					jstr(cfg), jstr(im), jstr(m), jnum(med), jnum(lo), jnum(hi), n)
				if (out == "table")
					printf "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", cfg, m, im, jnum(med), jnum(lo), jnum(hi), n, (rmed == "-") ? "-" : jnum(rmed), (rnd == "-") ? "-" : jnum(rnd)
			}
			for (ii = 1; ii <= ni; ii++) {
				im = il[ii]
				if ((cfg, im, m) in seen_chk)
					chkl[++nchk] = sprintf("{\"cfg\":%s,\"impl\":%s,\"counter\":%s,\"total_all_rounds\":%s}",
						jstr(cfg), jstr(im), jstr(m), jnum(chk[cfg, im, m]))
			}
		}
	}
	if (out != "json") exit 0
	printf "  \"results\": [\n"
	for (i = 1; i <= nres; i++) printf "    %s%s\n", res[i], (i < nres) ? "," : ""
	printf "  ],\n  \"ratios\": [\n"
	for (i = 1; i <= nrat; i++) printf "    %s%s\n", ratio[i], (i < nrat) ? "," : ""
	printf "  ],\n  \"checks\": [\n"
	for (i = 1; i <= nchk; i++) printf "    %s%s\n", chkl[i], (i < nchk) ? "," : ""
	printf "  ],\n  \"failures\": [\n"
	for (i = 1; i <= nfail; i++) printf "    %s%s\n", jstr(fail[i]), (i < nfail) ? "," : ""
	printf "  ]\n"
}
