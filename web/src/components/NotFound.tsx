import { Link } from 'react-router';
export function NotFound() {
  return (
    <div className="page">
      <h1>Not found</h1>
      <p>
        There is no page here. <Link to="/">Go to the start</Link>.
      </p>
    </div>
  );
}
