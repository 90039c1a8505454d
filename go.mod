module github.com/wabridge/wabridge

go 1.26.0

require (
	github.com/pion/srtp/v3 v3.1.0
	github.com/sirupsen/logrus v1.10.2
)

require (
	github.com/pion/logging v0.2.4 // indirect
	github.com/pion/randutil v0.1.0 // indirect
	github.com/pion/rtcp v1.2.20 // indirect
	github.com/pion/rtp v1.10.6 // indirect
	github.com/pion/transport/v5 v5.0.1 // indirect
	golang.org/x/sys v0.41.0 // indirect
)
