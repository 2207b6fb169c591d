//! The simulated network: each packet's one-way delay drawn independently per direction, with
//! loss, duplication and reordering (a late duplicate or a heavy-tailed delay reorders).

use rand::Rng;
use rand::rngs::StdRng;

/// Which way a packet goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Client to server.
    Request,
    /// Server to client.
    Reply,
}

/// The random part of a one-way delay.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Jitter {
    /// None.
    None,
    /// Exponential with this mean, seconds.
    Exponential(f64),
    /// Two exponentials added: the sum of two queues (case c of the comparison).
    TwoExponentials(f64, f64),
    /// Pareto with this scale (seconds) and shape: heavier tails than exponential.
    Pareto {
        /// Scale, seconds.
        scale: f64,
        /// Shape (tail index), above 1.
        shape: f64,
    },
}

/// One direction of a link.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct OneWay {
    /// Fixed delay, seconds.
    pub base: f64,
    /// The random part.
    pub jitter: Jitter,
    /// Probability a packet is lost.
    pub loss: f64,
    /// Probability a packet arrives twice (the copy with its own delay).
    pub duplicate: f64,
}

impl OneWay {
    /// `base` plus exponential jitter of mean `mean`, no loss.
    pub const fn exponential(base: f64, mean: f64) -> Self {
        Self {
            base,
            jitter: Jitter::Exponential(mean),
            loss: 0.0,
            duplicate: 0.0,
        }
    }

    /// Draws a delay, or `None` if the packet is lost.
    pub fn draw(&self, rng: &mut StdRng) -> Option<f64> {
        if self.loss > 0.0 && rng.r#gen::<f64>() < self.loss {
            return None;
        }
        let random = match self.jitter {
            Jitter::None => 0.0,
            Jitter::Exponential(mean) => mean * exponential(rng),
            Jitter::TwoExponentials(a, b) => a * exponential(rng) + b * exponential(rng),
            Jitter::Pareto { scale, shape } => {
                scale * ((1.0 - rng.r#gen::<f64>()).powf(-1.0 / shape) - 1.0)
            }
        };
        Some(self.base + random)
    }
}

/// A link between a client and a server: its two directions.
#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Link {
    /// Client to server.
    pub request: OneWay,
    /// Server to client.
    pub reply: OneWay,
}

impl Link {
    /// The same delay model both ways.
    pub const fn symmetric(way: OneWay) -> Self {
        Self {
            request: way,
            reply: way,
        }
    }

    /// The direction `direction` of this link.
    pub fn way(&self, direction: Direction) -> &OneWay {
        match direction {
            Direction::Request => &self.request,
            Direction::Reply => &self.reply,
        }
    }
}

/// A draw from Exp(1).
pub fn exponential(rng: &mut StdRng) -> f64 {
    -(1.0 - rng.r#gen::<f64>()).ln()
}

/// A draw from N(0, 1) (Box-Muller).
pub fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = 1.0 - rng.r#gen::<f64>();
    let v: f64 = rng.r#gen();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}
