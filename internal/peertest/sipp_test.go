package peertest

import (
	"context"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartSippReportsTakenPort(t *testing.T) {
	t.Parallel()
	held, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer held.Close()
	opts := sippBase(ScenarioPath("pbx_uas_busy.xml"))
	opts.LocalPort = held.LocalAddr().(*net.UDPAddr).Port // fixed by the caller: no retry
	p := StartSipp(t, opts)
	p.RequireExit(t, sippWait, SippExitFatalBinding)
	assert.Equal(t, "sip", p.bindFailure())
}

func TestSippStopKillsAndReaps(t *testing.T) {
	t.Parallel()
	opts := sippBase(ScenarioPath("pbx_uas_echo.xml"))
	opts.RTPEcho = true
	p := StartSipp(t, opts)
	require.True(t, ownsPort(p.Pid(), "udp", int(p.SIPAddr.Port())), "StartSipp returns once the SIP port is bound")
	require.True(t, ownsPort(p.Pid(), "udp", int(p.MediaAddr.Port())), "and the echo port")
	p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	code, err := p.Wait(ctx)
	require.Error(t, err, "killed, not exited")
	assert.Equal(t, -1, code)
	assert.ErrorIs(t, syscall.Kill(p.Pid(), 0), syscall.ESRCH, "the process is gone")
	p.Stop() // idempotent
}

func TestSippMissingKeyFails(t *testing.T) {
	t.Parallel()
	opts := sippBase(ScenarioPath("pbx_uac_call.xml"))
	opts.Remote = "127.0.0.1:9" // never reached
	p := StartSipp(t, opts)
	p.RequireExit(t, sippWait, SippExitCallFailed) // what 3.6.1 exits with for a bad scenario
	assert.Contains(t, p.Logs(), "Unsupported keyword 'business'")
}

func TestRenderedScenarios(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(UASRejectScenario(t, 480, "Temporarily Unavailable"))
	require.NoError(t, err)
	assert.Contains(t, string(b), "SIP/2.0 480 Temporarily Unavailable\n")
	assert.NotContains(t, string(b), "SIP/2.0 603")
	b, err = os.ReadFile(UACRejectScenario(t, 403))
	require.NoError(t, err)
	assert.Contains(t, string(b), `<recv response="403" rtd="true"/>`)
}

func TestScenarioFilesExist(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"pbx_uas_echo.xml", "pbx_uas_play.xml", "pbx_uas_busy.xml", "pbx_uas_reject.xml",
		"pbx_uas_noanswer.xml", "pbx_uas_hangup.xml", "pbx_uas_reinvite.xml", "pbx_uas_pcmu.xml",
		"pbx_uac_call.xml", "pbx_uac_reject.xml", "pbx_uac_cancel.xml", "pbx_uac_wait_bye.xml",
	} {
		_, err := os.Stat(ScenarioPath(name))
		assert.NoError(t, err, name)
	}
}
