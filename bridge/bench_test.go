package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/stretchr/testify/require"

	"github.com/wabridge/wabridge/pbxsim"
	"github.com/wabridge/wabridge/wasim"
)

// BenchmarkCallSetup measures a whole SIP-mode call on loopback, per media profile: Meta's
// INVITE, the 407 round, the PBX INVITE/200/ACK, our 200 with Meta's ACK, media up (the maiden
// packet received on the WhatsApp side), then BYE on both legs. The PBX (pbxsim) answers at once.
//
//	go test -run xxx -bench CallSetup -benchmem ./bridge/
func BenchmarkCallSetup(b *testing.B) {
	for _, tc := range []struct {
		name string
		dtls bool
	}{{"sdes", false}, {"dtls", true}} {
		b.Run(tc.name, func(b *testing.B) {
			log := logrus.New()
			log.SetOutput(&logBuffer{})
			pbx, err := pbxsim.New(pbxsim.Config{ListenUDP: "127.0.0.1:0", Log: logrus.NewEntry(log),
				Answer: func(pbxsim.Incoming) pbxsim.Answer { return pbxsim.Answer{Code: 200, Echo: true} }})
			require.NoError(b, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			require.NoError(b, pbx.Start(ctx))
			defer pbx.Close()
			go func() { // drain the PBX's call notifications
				for {
					select {
					case <-pbx.Calls():
					case <-ctx.Done():
						return
					}
				}
			}()
			h := newHarness(b, harnessOptions{pbxAddr: pbx.Addr().String(), dtls: tc.dtls})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cctx, ccancel := context.WithTimeout(context.Background(), 20*time.Second)
				call, err := h.dial(cctx, wasim.DialOptions{})
				require.NoError(b, err)
				// Answered means media: wait for the business's maiden packet.
				for len(call.Media.Received()) == 0 && cctx.Err() == nil {
					time.Sleep(100 * time.Microsecond)
				}
				require.NoError(b, call.Hangup(cctx))
				ccancel()
			}
			b.StopTimer()
			h.waitIdle()
		})
	}
}
