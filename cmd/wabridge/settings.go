package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/wabridge/wabridge/bridge"
	"github.com/wabridge/wabridge/bsp"
	"github.com/wabridge/wabridge/config"
)

// cmdSettings reads or changes a number's calling settings through its provider's settings API
// (the number's api block): wabridge settings get|set --number +E164 ...
func (c *cli) cmdSettings(ctx context.Context, fs *flag.FlagSet, args []string) int {
	if len(args) == 0 || (args[0] != "get" && args[0] != "set") {
		fmt.Fprintln(c.stderr, "usage: wabridge settings get|set --config FILE --number +E164 [flags]; see wabridge settings get -h")
		return exitUsage
	}
	verb := args[0]
	path := fs.String("config", defaultConfigPath, "the wabridge config (`FILE`) naming the number's provider and token")
	number := fs.String("number", "", "business `number` (E.164) to act on; default: the only number with an api block")
	showPassword := fs.Bool("show-sip-password", false, "get: also print the SIP password (include_sip_credentials=true)")
	status := fs.String("status", "", "set: calling status ENABLED or DISABLED")
	icon := fs.String("icon", "", "set: call_icon_visibility DEFAULT or DISABLE_ALL")
	callback := fs.String("callback", "", "set: callback_permission_status ENABLED or DISABLED")
	srtp := fs.String("srtp", "", "set: srtp_key_exchange_protocol DTLS or SDES")
	sipStatus := fs.String("sip-status", "", "set: sip.status ENABLED or DISABLED")
	sipServer := fs.String("sip-server", "", "set: sip.servers to this `host[:port]` (the number's one server)")
	hours := fs.String("call-hours", "", "set: call_hours from a JSON `FILE` in Meta's shape; holidays the file omits are kept")
	if code, done := c.parseFlags(fs, args[1:]); done {
		return code
	}
	cfg, err := config.Load(*path)
	if err != nil {
		c.printConfigError(*path, err)
		return exitFailure
	}
	num, err := settingsNumber(cfg, *number)
	if err != nil {
		fmt.Fprintf(c.stderr, "wabridge settings: %v\n", err)
		return exitUsage
	}
	log := logrus.New()
	log.SetOutput(c.stderr)
	log.SetLevel(logrus.WarnLevel)
	p, err := bridge.NewProvider(num, logrus.NewEntry(log))
	if err != nil {
		fmt.Fprintf(c.stderr, "wabridge settings: %v\n", err)
		return exitFailure
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	if verb == "get" {
		st, err := p.GetSettings(ctx, *showPassword)
		if err != nil {
			fmt.Fprintf(c.stderr, "wabridge settings get: %v\n", err)
			return exitFailure
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st) // passwords print as [redacted]
		if *showPassword && st.SIP != nil {
			for _, s := range st.SIP.Servers {
				if s.Password != "" {
					fmt.Fprintf(c.stdout, "sip_user_password (%s): %s\n", s.Hostname, string(s.Password))
				}
			}
		}
		return exitOK
	}

	st := &bsp.Settings{Status: *status, CallIconVisibility: *icon, CallbackPermissionStatus: *callback, SRTPKeyExchangeProtocol: *srtp}
	if *sipStatus != "" || *sipServer != "" {
		st.SIP = &bsp.SIPSettings{Status: *sipStatus}
		if *sipServer != "" {
			srv, err := parseSIPServer(*sipServer)
			if err != nil {
				fmt.Fprintf(c.stderr, "wabridge settings set: --sip-server: %v\n", err)
				return exitUsage
			}
			st.SIP.Servers = []bsp.SIPServer{srv}
		}
	}
	changed := *status != "" || *icon != "" || *callback != "" || *srtp != "" || st.SIP != nil
	if changed {
		if err := p.SetSettings(ctx, st); err != nil {
			fmt.Fprintf(c.stderr, "wabridge settings set: %v\n", err)
			return exitFailure
		}
	}
	if *hours != "" {
		if err := setCallHours(ctx, p, *hours); err != nil {
			fmt.Fprintf(c.stderr, "wabridge settings set: %v\n", err)
			return exitFailure
		}
		changed = true
	}
	if !changed {
		fmt.Fprintln(c.stderr, "wabridge settings set: nothing to change; see wabridge settings set -h")
		return exitUsage
	}
	fmt.Fprintln(c.stdout, "settings updated")
	return exitOK
}

// settingsNumber picks the number to manage.
func settingsNumber(cfg *config.Config, number string) (*config.Number, error) {
	if number != "" {
		n, ok := cfg.Number(number)
		if !ok {
			return nil, fmt.Errorf("--number %s is not in the config", number)
		}
		if n.API.Provider == "" {
			return nil, fmt.Errorf("number %s has no api block (provider and token) for its settings API", n.Number)
		}
		return n, nil
	}
	var found *config.Number
	for i := range cfg.Numbers {
		if cfg.Numbers[i].API.Provider != "" {
			if found != nil {
				return nil, errors.New("several numbers have an api block: choose one with --number")
			}
			found = &cfg.Numbers[i]
		}
	}
	if found == nil {
		return nil, errors.New("no number has an api block (provider and token) for its settings API")
	}
	return found, nil
}

func parseSIPServer(s string) (bsp.SIPServer, error) {
	host, port := s, 0
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return bsp.SIPServer{}, fmt.Errorf("%q: bad port", s)
		}
		host, port = h, n
	}
	if host == "" {
		return bsp.SIPServer{}, fmt.Errorf("%q: no host", s)
	}
	return bsp.SIPServer{Hostname: host, Port: port}, nil
}

// callHoursFile is Meta's call_hours object. A file without holiday_schedule keeps the current
// holidays: Meta replaces call_hours wholesale and would delete them (whatsapp-calling.md §1.2).
type callHoursFile struct {
	Status               string `json:"status"`
	TimezoneID           string `json:"timezone_id"`
	WeeklyOperatingHours []struct {
		DayOfWeek string `json:"day_of_week"`
		OpenTime  string `json:"open_time"`
		CloseTime string `json:"close_time"`
	} `json:"weekly_operating_hours"`
	HolidaySchedule *[]struct {
		Date      string `json:"date"`
		StartTime string `json:"start_time"`
		EndTime   string `json:"end_time"`
	} `json:"holiday_schedule"`
}

func setCallHours(ctx context.Context, p bsp.Provider, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--call-hours: %w", err)
	}
	var f callHoursFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("--call-hours %s: %w", path, err)
	}
	return bsp.SetCallHours(ctx, p, func(ch *bsp.CallHours) error {
		ch.Status, ch.TimezoneID = f.Status, f.TimezoneID
		ch.WeeklyOperatingHours = nil
		for _, w := range f.WeeklyOperatingHours {
			ch.WeeklyOperatingHours = append(ch.WeeklyOperatingHours, bsp.OperatingHours{DayOfWeek: w.DayOfWeek, OpenTime: w.OpenTime, CloseTime: w.CloseTime})
		}
		if f.HolidaySchedule != nil {
			ch.HolidaySchedule = []bsp.Holiday{}
			for _, h := range *f.HolidaySchedule {
				ch.HolidaySchedule = append(ch.HolidaySchedule, bsp.Holiday{Date: h.Date, StartTime: h.StartTime, EndTime: h.EndTime})
			}
		}
		return nil
	})
}
