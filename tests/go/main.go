// franz-go client program driven by tests/integration.
//
//	franz-client --bootstrap H:P create-topics [--partitions N] TOPIC...
//	franz-client --bootstrap H:P produce --start S --count N --base-ts T TOPIC=CODEC...
//	franz-client --bootstrap H:P consume --count N [--partitions P] --out-dir D [--timeout S] TOPIC...
//	franz-client --bootstrap H:P offsets-for-times TOPIC:PARTITION:TS...
//	franz-client --bootstrap H:P group --group G --balancer range|cooperative-sticky
//	    [--session-ms MS] [--stop-file F] [--read N --partitions P] TOPIC
//	franz-client --bootstrap H:P stream --topic T --acks-file F --rate R [--stop-file X] [--seconds S]
//
// group: a kgo.ConsumerGroup member. It prints "ASSIGNED p,p,..." (its whole
// assignment) after every change. Without --read it runs until the stop file
// exists, then leaves the group. With --read N it reads N records of each of
// the P partitions, commits exactly after the last one read, prints
// {"read": {"<p>": [offsets]}}, leaves and exits.
//
// stream: the failover tests' producer, as the Java client's "stream": a paced,
// numbered acks=all idempotent stream (record seq: key "<seq>", value
// "seq-%012d-" padded with '.' to 100 bytes). Every acknowledged record is
// appended to the acks file as "partition offset seq". It runs until the stop
// file exists or --seconds pass, then waits for what is in flight and prints
// {"sent", "acked", "failed", "errors"}.
//
// Record content and the dump format are those of tests/integration/clients/common.py.
// The producer keeps franz-go's defaults (acks=all, idempotence on) apart from
// linger and compression.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const client = "franz-go"

func key(i int64) []byte { return []byte("key-" + strconv.FormatInt(i%1000, 10)) }

func value(codec string, i int64) []byte {
	pat := fmt.Sprintf("%08x", uint32(uint64(i)*2654435761))
	s := client + "-" + codec + "-" + strconv.FormatInt(i, 10) + "-" + strings.Repeat(pat, 13)
	return []byte(s[:100])
}

func headers(codec string, i int64) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: "src", Value: []byte(client + "-" + codec)},
		{Key: "idx", Value: []byte(strconv.FormatInt(i, 10))},
	}
}

func hx(b []byte) string {
	if b == nil {
		return "-"
	}
	return hex.EncodeToString(b)
}

func die(format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	os.Exit(1)
}

func codecOf(name string) kgo.CompressionCodec {
	switch name {
	case "none":
		return kgo.NoCompression()
	case "gzip":
		return kgo.GzipCompression()
	case "snappy":
		return kgo.SnappyCompression()
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	}
	die("unknown codec %q", name)
	return kgo.NoCompression()
}

func newClient(bootstrap string, opts ...kgo.Opt) *kgo.Client {
	base := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...), // a cluster: "h:p,h:p,..."
		kgo.RequestTimeoutOverhead(5 * time.Second),
		kgo.RetryTimeout(30 * time.Second),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		die("client: %v", err)
	}
	return cl
}

func main() {
	if len(os.Args) < 4 || os.Args[1] != "--bootstrap" {
		die("usage: franz-client --bootstrap H:P <command> ... (see source)")
	}
	bootstrap, cmd, rest := os.Args[2], os.Args[3], os.Args[4:]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	partitions := fs.Int("partitions", 6, "partitions")
	start := fs.Int64("start", 0, "first record index")
	count := fs.Int64("count", 0, "records (per topic)")
	baseTs := fs.Int64("base-ts", 0, "timestamp of record 0 (ms)")
	outDir := fs.String("out-dir", ".", "dump directory")
	timeout := fs.Float64("timeout", 60, "seconds")
	group := fs.String("group", "", "consumer group")
	balancer := fs.String("balancer", "cooperative-sticky", "range|cooperative-sticky")
	sessionMs := fs.Int("session-ms", 6000, "session timeout (ms)")
	stopFile := fs.String("stop-file", "", "leave the group once this file exists")
	read := fs.Int64("read", 0, "records to read per partition, then commit and exit")
	topic := fs.String("topic", "", "topic (stream)")
	acksFile := fs.String("acks-file", "", "acknowledged records (stream)")
	rate := fs.Int64("rate", 5000, "records per second (stream)")
	seconds := fs.Float64("seconds", 120, "longest run in seconds (stream)")
	if err := fs.Parse(rest); err != nil {
		die("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	switch cmd {
	case "create-topics":
		cl := newClient(bootstrap)
		defer cl.Close()
		adm := kadm.NewClient(cl)
		cctx, c2 := context.WithTimeout(ctx, 30*time.Second)
		defer c2()
		res, err := adm.CreateTopics(cctx, int32(*partitions), 1, nil, fs.Args()...)
		if err != nil {
			die("create topics: %v", err)
		}
		if err := res.Error(); err != nil {
			die("create topics: %v", err)
		}
		fmt.Printf("{\"created\": %d}\n", len(fs.Args()))
	case "produce":
		os.Exit(produce(ctx, bootstrap, *start, *count, *baseTs, fs.Args()))
	case "consume":
		os.Exit(consume(ctx, bootstrap, *count, *partitions, *outDir, *timeout, fs.Args()))
	case "group":
		os.Exit(groupMember(ctx, bootstrap, *group, *balancer, *sessionMs, *stopFile, *read,
			*partitions, *timeout, fs.Args()))
	case "stream":
		os.Exit(stream(ctx, bootstrap, *topic, *acksFile, *stopFile, *rate, *seconds))
	case "offsets-for-times":
		cl := newClient(bootstrap)
		defer cl.Close()
		adm := kadm.NewClient(cl)
		for _, q := range fs.Args() { // one call per query: several may name the same partition
			i := strings.LastIndex(q, ":")
			j := strings.LastIndex(q[:i], ":")
			topic := q[:j]
			p, _ := strconv.Atoi(q[j+1 : i])
			ts, _ := strconv.ParseInt(q[i+1:], 10, 64)
			qctx, c2 := context.WithTimeout(ctx, 20*time.Second)
			res, err := adm.ListOffsetsAfterMilli(qctx, ts, topic)
			c2()
			if err != nil {
				die("list offsets: %v", err)
			}
			lo, ok := res.Lookup(topic, int32(p))
			if !ok {
				die("no answer for %s", q)
			}
			if lo.Err != nil {
				die("list offsets %s: %v", q, lo.Err)
			}
			off := lo.Offset
			// kadm answers "no record at/after ts" with the end offset (timestamp -1).
			if lo.Timestamp < 0 {
				off = -1
			}
			fmt.Printf("%s %d %d %d\n", topic, p, ts, off)
		}
	default:
		die("unknown command %s", cmd)
	}
}

func produce(ctx context.Context, bootstrap string, start, count, baseTs int64, specs []string) int {
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	for _, spec := range specs {
		eq := strings.LastIndex(spec, "=")
		topic, codec := spec[:eq], spec[eq+1:]
		cl := newClient(bootstrap,
			kgo.ProducerLinger(5*time.Millisecond),
			kgo.ProducerBatchCompression(codecOf(codec)),
			kgo.MaxBufferedRecords(200000),
			// No RecordDeliveryTimeout: franz-go measures it from the record's
			// timestamp, which these records set in the past. The orchestrator's
			// process timeout bounds the run instead.
		)
		var wg sync.WaitGroup
		for i := start; i < start+count; i++ {
			r := &kgo.Record{Topic: topic, Key: key(i), Value: value(codec, i),
				Headers: headers(codec, i), Timestamp: time.UnixMilli(baseTs + 2*i)}
			wg.Add(1)
			cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
				defer wg.Done()
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					acked.Add(1)
				}
			})
		}
		if err := cl.Flush(ctx); err != nil {
			die("flush: %v", err)
		}
		wg.Wait()
		cl.Close()
	}
	errs := ""
	if e := firstErr.Load(); e != nil {
		errs = strconv.Quote(e.(string))
	}
	fmt.Printf("{\"acked\": %d, \"failed\": %d, \"errors\": [%s]}\n", acked.Load(), failed.Load(), errs)
	if failed.Load() != 0 || acked.Load() != count*int64(len(specs)) {
		return 1
	}
	return 0
}

func consume(ctx context.Context, bootstrap string, count int64, partitions int, outDir string,
	timeout float64, topics []string) int {
	assign := map[string]map[int32]kgo.Offset{}
	files := map[string]*bufio.Writer{}
	got := map[string]int64{}
	for _, t := range topics {
		m := map[int32]kgo.Offset{}
		for p := 0; p < partitions; p++ {
			m[int32(p)] = kgo.NewOffset().AtStart()
		}
		assign[t] = m
		f, err := os.Create(filepath.Join(outDir, t+".tsv"))
		if err != nil {
			die("%v", err)
		}
		defer f.Close()
		w := bufio.NewWriterSize(f, 1<<20)
		defer w.Flush()
		files[t] = w
	}
	cl := newClient(bootstrap, kgo.ConsumePartitions(assign),
		kgo.FetchMaxBytes(16<<20), kgo.FetchMaxPartitionBytes(4<<20))
	defer cl.Close()
	need := count * int64(len(topics))
	var total int64
	deadline := time.Now().Add(time.Duration(timeout * float64(time.Second)))
	var sb strings.Builder
	for total < need && time.Now().Before(deadline) {
		pctx, c2 := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := cl.PollRecords(pctx, 20000)
		c2()
		fetches.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded {
				fmt.Fprintf(os.Stderr, "fetch error %s/%d: %v\n", t, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			sb.Reset()
			fmt.Fprintf(&sb, "%d\t%d\t%d\t%s\t%s\t", r.Partition, r.Offset, r.Timestamp.UnixMilli(), hx(r.Key), hx(r.Value))
			for k, h := range r.Headers {
				if k > 0 {
					sb.WriteByte(';')
				}
				sb.WriteString(h.Key + "=" + hx(h.Value))
			}
			sb.WriteByte('\n')
			files[r.Topic].WriteString(sb.String())
			got[r.Topic]++
			total++
		})
	}
	parts := []string{}
	for _, t := range topics {
		parts = append(parts, fmt.Sprintf("%q: %d", t, got[t]))
	}
	fmt.Printf("{\"consumed\": {%s}}\n", strings.Join(parts, ", "))
	if total < need {
		return 1
	}
	return 0
}

func groupMember(ctx context.Context, bootstrap, group, balancer string, sessionMs int,
	stopFile string, read int64, partitions int, timeout float64, topics []string) int {
	if group == "" || len(topics) != 1 {
		die("group: --group and one topic needed")
	}
	topic := topics[0]
	var bal kgo.GroupBalancer
	switch balancer {
	case "range":
		bal = kgo.RangeBalancer()
	case "cooperative-sticky":
		bal = kgo.CooperativeStickyBalancer()
	default:
		die("unknown balancer %q", balancer)
	}
	var mu sync.Mutex
	owned := map[int32]bool{}
	report := func() { // with mu held
		ps := []string{}
		for p := int32(0); p < 1<<16 && len(ps) < len(owned); p++ {
			if owned[p] {
				ps = append(ps, strconv.Itoa(int(p)))
			}
		}
		fmt.Printf("ASSIGNED %s\n", strings.Join(ps, ","))
		os.Stdout.Sync()
	}
	change := func(add bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			mu.Lock()
			defer mu.Unlock()
			for _, p := range m[topic] {
				if add {
					owned[p] = true
				} else {
					delete(owned, p)
				}
			}
			report()
		}
	}
	cl := newClient(bootstrap,
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.Balancers(bal),
		kgo.SessionTimeout(time.Duration(sessionMs)*time.Millisecond),
		kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.RebalanceTimeout(20*time.Second),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(change(true)),
		kgo.OnPartitionsRevoked(change(false)),
		kgo.OnPartitionsLost(change(false)),
	)
	leave := func() int {
		lctx, c2 := context.WithTimeout(ctx, 15*time.Second)
		defer c2()
		if err := cl.LeaveGroupContext(lctx); err != nil {
			fmt.Fprintf(os.Stderr, "leave: %v\n", err)
			cl.Close()
			return 1
		}
		cl.Close()
		return 0
	}
	got := map[int32][]int64{}
	done := func() bool {
		if read <= 0 {
			return false
		}
		for p := 0; p < partitions; p++ {
			if int64(len(got[int32(p)])) < read {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(time.Duration(timeout * float64(time.Second)))
	for !done() {
		if stopFile != "" {
			if _, err := os.Stat(stopFile); err == nil {
				return leave()
			}
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "timed out; read %v\n", got)
			cl.Close()
			return 1
		}
		pctx, c2 := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := cl.PollFetches(pctx)
		c2()
		fetches.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded {
				fmt.Fprintf(os.Stderr, "fetch error %s/%d: %v\n", t, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if read > 0 && int64(len(got[r.Partition])) < read {
				got[r.Partition] = append(got[r.Partition], r.Offset)
			}
		})
	}
	// Commit exactly after the last record read of each partition.
	offsets := map[string]map[int32]kgo.EpochOffset{topic: {}}
	for p, offs := range got {
		offsets[topic][p] = kgo.EpochOffset{Epoch: -1, Offset: offs[len(offs)-1] + 1}
	}
	var commitErr error
	cctx, c2 := context.WithTimeout(ctx, 30*time.Second)
	cl.CommitOffsetsSync(cctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest,
		resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil && commitErr == nil {
					commitErr = fmt.Errorf("%s/%d: %w", t.Topic, p.Partition, e)
				}
			}
		}
	})
	c2()
	if commitErr != nil {
		fmt.Fprintf(os.Stderr, "commit: %v\n", commitErr)
		cl.Close()
		return 1
	}
	parts := []string{}
	for p := 0; p < partitions; p++ {
		ss := []string{}
		for _, o := range got[int32(p)] {
			ss = append(ss, strconv.FormatInt(o, 10))
		}
		parts = append(parts, fmt.Sprintf("\"%d\": [%s]", p, strings.Join(ss, ", ")))
	}
	fmt.Printf("{\"read\": {%s}}\n", strings.Join(parts, ", "))
	return leave()
}

func stream(ctx context.Context, bootstrap, topic, acksFile, stopFile string, rate int64,
	seconds float64) int {
	if topic == "" || acksFile == "" || rate <= 0 {
		die("stream: --topic, --acks-file and a positive --rate needed")
	}
	f, err := os.Create(acksFile)
	if err != nil {
		die("%v", err)
	}
	defer f.Close()
	var mu sync.Mutex // guards w
	w := bufio.NewWriter(f)
	flush := func() {
		mu.Lock()
		defer mu.Unlock()
		if err := w.Flush(); err != nil {
			die("acks file: %v", err)
		}
	}
	// franz-go's defaults otherwise (acks=all, idempotence, retries): the
	// records carry the producer's clock, so the delivery timeout counts
	// from their send, like the Java stream's delivery.timeout.ms.
	cl := newClient(bootstrap,
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordDeliveryTimeout(120*time.Second),
	)
	var acked, failed atomic.Int64
	var firstErr atomic.Value
	var sent int64
	t0 := time.Now()
	end := t0.Add(time.Duration(seconds * float64(time.Second)))
	nextCheck := t0
	for time.Now().Before(end) {
		if now := time.Now(); now.After(nextCheck) {
			flush()
			if stopFile != "" {
				if _, err := os.Stat(stopFile); err == nil {
					break
				}
			}
			nextCheck = now.Add(100 * time.Millisecond)
		}
		due := int64(time.Since(t0).Seconds() * float64(rate))
		if sent >= due {
			time.Sleep(time.Millisecond)
			continue
		}
		seq := sent
		sent++
		v := fmt.Sprintf("seq-%012d-", seq)
		val := v + strings.Repeat(".", 100-len(v))
		r := &kgo.Record{Topic: topic, Key: []byte(strconv.FormatInt(seq, 10)), Value: []byte(val)}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			acked.Add(1)
			mu.Lock()
			fmt.Fprintf(w, "%d %d %d\n", r.Partition, r.Offset, seq)
			mu.Unlock()
		})
	}
	fctx, c2 := context.WithTimeout(ctx, 60*time.Second)
	if err := cl.Flush(fctx); err != nil {
		fmt.Fprintf(os.Stderr, "flush: %v\n", err)
	}
	c2()
	cl.Close()
	flush()
	errs := ""
	if e := firstErr.Load(); e != nil {
		errs = strconv.Quote(e.(string))
	}
	fmt.Printf("{\"sent\": %d, \"acked\": %d, \"failed\": %d, \"errors\": [%s]}\n", sent,
		acked.Load(), failed.Load(), errs)
	return 0
}
